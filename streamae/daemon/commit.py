"""Making the work durable: the commit of each delivery mode, in the order
:mod:`streamae.daemon.checkpoint` documents, and recovery when a commit fails. Part of
:class:`~streamae.daemon.runner.Daemon`."""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamae.daemon import clients
from streamae.daemon.calls import CommitTimeout, DeliveryError, bounded, close_producer, retry
from streamae.daemon.state_topic import MAX_RECORD_BYTES, Snapshot
from streamae.pipeline_state import PipelineState

log = logging.getLogger(__name__)


class Committer:
    """The daemon's commits (a mixin: it works on the daemon's own state)."""

    def _commit(self, handing_over: bool = False) -> None:
        """Make everything handled so far durable, in the order the checkpoint module
        documents; on a delivery failure, replay from the last durable point. While
        partitions are being handed over (inside the rebalance callback, where the
        consumer cannot be called) at-least-once leaves the offset commit to the next
        interval: the state topic already tells the next owner where to start."""
        if not self.restored or not self.dirty:
            return
        start = time.perf_counter()
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                   for (t, p), o in self.positions.items()}
        timeout = self.config.daemon.commit_timeout
        # a stop abandons a commit stuck in the loop; the stop's own commit has its timeout
        abandon = None if handing_over or self.stopping.is_set() else self.stopping
        try:
            if self.exactly_once:
                self._check_sent()  # a send that failed at once never joined the transaction
                self._save()
                self.pending += self._write_state()
                group = self.consumer.group_metadata()
                bounded(lambda: self.producer.send_offsets_to_transaction(offsets, group),
                        timeout, "send_offsets_to_transaction", abandon)
                bounded(self.producer.commit_transaction, timeout, "commit_transaction",
                        abandon)
                self.in_transaction = False
            else:
                self._flush(timeout)
                snapshots = self._write_state()
                if snapshots:  # sent only once the events they follow are acknowledged
                    self.pending += snapshots
                    self._flush(timeout)
                self._save()
                if not handing_over:
                    self.consumer.commit(offsets, timeout_ms=int(timeout * 1000))
        except KafkaError as exc:
            self.metrics.commit_failures.inc()
            self._recover(exc, later=handing_over)
            return
        if self.exactly_once or not handing_over:  # the checkpoint's offsets are committed
            self.store.confirm()
        self.pending.clear()
        self.dirty = False
        self.metrics.commits.inc()
        self.metrics.commit_seconds.observe(time.perf_counter() - start)

    def _flush(self, timeout: float) -> None:
        try:
            self.producer.flush(timeout=timeout)
        except KafkaError as exc:  # still buffered: the next interval's flush waits again
            raise CommitTimeout(f"events not acknowledged within {timeout:g} s "
                                f"(daemon.commit_timeout): {exc}") from None
        self._check_sent()

    def _check_sent(self) -> None:
        """Refuse to commit past a failed send."""
        failed = [f for f in self.pending if f.is_done and f.failed()]
        if failed:
            raise DeliveryError(f"{len(failed)} sends failed: {failed[0].exception}")

    def _save(self) -> None:
        self.store.save(self.positions, self._state(), self._decoder_state(),
                        self.owners.of)

    def _write_state(self) -> list[Any]:
        """Snapshot each partition that moved on since its last snapshot to the state
        topic (sent, not yet acknowledged)."""
        if self.state_topic is None or not self.owners.changed:
            return []
        snapshots = {p: Snapshot(self.positions[p], self._export_keys(names))
                     for p, names in self.owners.keys_in(self.owners.changed).items()
                     if p in self.positions}
        sent = self.state_topic.write(self.producer, snapshots)
        self.owners.changed.clear()
        return sent

    def _export_keys(self, names: list[str]) -> PipelineState:
        """A partition's keys' state for its next owner: the pipeline's, and where their
        alarms stand for the updater (an operator's reject follows the key)."""
        state = self.pipeline.export_keys(names)
        if self.updates:
            state.meta["updater_alarms"] = self.updates.updater.export_alarms(names)
        return state

    def hand_over(self) -> None:
        """Partitions are about to be revoked: make the work on them durable and their
        state readable by their next owner before the rebalance goes on."""
        if self.restored and self.dirty:
            log.info("handing over: committing state before partitions are revoked")
            self._commit(handing_over=True)

    def _recover(self, exc: Exception, later: bool = False) -> None:
        """After a failed commit: abort what is open and restore from the last durable
        state (``later``: inside the rebalance callback, the loop restores after it)."""
        if not self.exactly_once and not isinstance(exc, DeliveryError):
            # at-least-once keeps unacknowledged events in the producer, which goes on
            # sending them; the checkpoint and offsets follow at the next interval (a
            # crash before then replays from the previous checkpoint)
            log.warning("commit not finished (%s); retrying at the next interval", exc)
            return
        log.warning("commit failed (%s); replaying from the last durable checkpoint", exc)
        self.abort_open(exc)
        if later:
            self.restored = False
            self.assigned = list(self.consumer.assignment())
            return
        restored, _ = retry(lambda: self.restore(list(self.consumer.assignment())),
                            self.stopping, "restore from the last checkpoint", (KafkaError,))
        if not restored:
            self.restored = False  # stopping: the state in memory is not durable, commit nothing

    def abort_open(self, exc: Exception) -> None:
        """Exactly-once: abort the open transaction (its events are replayed)."""
        if self.exactly_once and self.in_transaction:
            if isinstance(exc, CommitTimeout):
                self._replace_producer(exc)
            else:
                try:
                    bounded(self.producer.abort_transaction, self.config.daemon.commit_timeout,
                            "abort_transaction", self.stopping)
                except KafkaError as abort_exc:
                    self._replace_producer(abort_exc)
            self.in_transaction = False

    def _new_producer(self) -> Any:
        producer = clients.producer(
            self.config.kafka, self.instance_id if self.exactly_once else None,
            **({"max_request_size": MAX_RECORD_BYTES} if self.state_topic else {}))
        if self.exactly_once:
            # a new producer with this transactional id fences any older one and aborts the
            # transaction it left open
            bounded(producer.init_transactions, self.config.daemon.commit_timeout * 2,
                    "init_transactions", self.stopping)
        return producer

    def _replace_producer(self, why: Exception) -> None:
        """Give up a producer whose transaction cannot be finished; its successor fences
        it. Retried until the brokers answer (or the daemon stops)."""
        log.error("transaction cannot be finished (%s); replacing the producer", why)
        old, self.producer = self.producer, None
        close_producer(old, 0.0)
        started, producer = retry(self._new_producer, self.stopping,
                                  "start a transactional producer")
        if started:
            self.producer = producer
            log.info("new transactional producer ready")
