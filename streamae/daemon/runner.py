"""The daemon: Kafka in -> decode -> pipeline -> Kafka out, with checkpointed state.

One loop, one thread: poll, decode (bad messages to the dead-letter topic), score with the
shared :class:`~streamae.pipeline.Pipeline`, send events; every ``daemon.commit_every`` make
the interval durable (see :mod:`streamae.daemon.checkpoint` for the order of a commit).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamae.clock import wall_clock
from streamae.config import Config
from streamae.daemon import announce, clients
from streamae.daemon.checkpoint import CheckpointStore, Offsets
from streamae.daemon.decode import BatchDecoder, DeadLetter, Provenance
from streamae.daemon.metrics import DaemonMetrics, serve
from streamae.daemon.updates import DaemonUpdates, starting_model
from streamae.errors import InputFormatError, ModelError
from streamae.formats import build_decoder
from streamae.models.detector import Detector
from streamae.pipeline import Pipeline
from streamae.windows import STATUS_NAMES

log = logging.getLogger(__name__)
MAX_DEAD_LETTER_BYTES = 900_000  # keep a dead letter under the producer's request limit


class DeliveryError(KafkaError):
    """Some events of the interval were not acknowledged; the interval is replayed."""


class Daemon:
    """Long-running scorer for the topics in ``config.input``."""

    def __init__(self, config: Config, detector: Detector) -> None:
        detector = starting_model(config, detector)
        self.config, self.detector = config, detector
        self.updates = DaemonUpdates(config, detector) if config.updater.enabled else None
        self.exactly_once = config.daemon.delivery == "exactly-once"
        self.store = CheckpointStore(config.daemon.state_dir)
        self.metrics = DaemonMetrics()
        self.metrics.model.labels(detector.version).set(1)
        self.stopping = threading.Event()
        self._fresh_state()
        self.consumer = self.producer = None
        self.restored = False
        self.in_transaction = False
        self.assigned: list[TopicPartition] | None = None
        self.owned: set[tuple[str, int]] = set()
        self.feed: announce.Follower | None = None

    @property
    def instance_id(self) -> str:
        """Stable per instance (``daemon.instance_id``, else derived from its state
        directory). It is the consumer's static group membership, so a restarted daemon
        takes its partitions back at once instead of waiting out the old session, and the
        producer's transactional id, so a restart aborts the transaction a crash left open."""
        if self.config.daemon.instance_id:
            return self.config.daemon.instance_id
        where = hashlib.sha256(str(Path(self.config.daemon.state_dir).resolve()).encode())
        return f"streamae-{self.config.daemon.group_id}-{where.hexdigest()[:12]}"

    def _fresh_state(self) -> None:
        self.provenance = Provenance()
        live = self.updates.updater.live if self.updates else self.detector
        self.pipeline = Pipeline(live, self.config, wall_clock, locate=self.provenance)
        if self.updates:
            self.updates.attach(self.pipeline)
        self.decoder = build_decoder(self.config.input, self.detector.channels,
                                     self.config.data.default_key)
        self.batches = BatchDecoder(self.decoder, self.detector.channels,
                                    self.config.input.max_message_bytes)
        self.positions: Offsets = {}
        self.pending: list[Any] = []
        self.dirty = False
        self.counted = dict.fromkeys(STATUS_NAMES, 0)

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit, checkpoint and return."""
        self.stopping.set()

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        d, k = self.config.daemon, self.config.kafka
        http = serve(self.metrics, d.http_host, d.http_port) if d.http_port else None
        try:
            clients.check_access(k)
            try:
                clients.ensure_topics(k, [d.output_topic, d.dead_letter_topic]
                                      + ([d.control_topic] if self.updates else []))
            except Exception as exc:  # clusters may forbid creation: the topics may exist
                log.warning("could not check/create the output topics: %s", exc)
            self.pipeline.warm_up()
            # torch, numba and the clients leave a large heap of long-lived objects; the
            # cyclic GC rescanning it on every generation-2 pass cost a third of the time
            # spent building consumer records. Freeze it: later garbage is still collected.
            gc.collect()
            gc.freeze()
            self.producer = clients.producer(
                k, self.instance_id if self.exactly_once else None)
            if self.exactly_once:
                self.producer.init_transactions()
            self.consumer = clients.consumer(k, d, self.exactly_once,
                                             group_instance_id=self.instance_id)
            for topic in self.config.input.topics:
                # have the topic in the client's metadata before joining the group: a
                # leader that joins without it assigns nothing to anyone
                if not self.consumer.partitions_for_topic(topic):
                    log.warning("input topic %s does not exist (yet); it is picked up when "
                                "it appears", topic)
            self.consumer.subscribe(self.config.input.topics, listener=_Rebalance(self))
            if self.updates:
                self.updates.open_control()
            if d.models_topic:
                self.feed = announce.Follower(k, d.models_topic)
            log.info("consuming %s as group %s (%s), events -> %s, dead letters -> %s",
                     ",".join(self.config.input.topics), d.group_id, d.delivery,
                     d.output_topic, d.dead_letter_topic)
            self._loop()
        finally:
            self._shutdown()
            if http:
                http.shutdown()

    def _loop(self) -> None:
        d = self.config.daemon
        last_commit = last_lag = last_models = time.monotonic()
        while not self.stopping.is_set():
            polled = self.consumer.poll(timeout_ms=int(d.poll_timeout * 1000),
                                        max_records=d.poll_records)
            self.metrics.beat()
            # the rebalance listener records assignments during any client call, restore's
            # own included: take each one exactly once, newest last
            moved: set[tuple[str, int]] = set()
            while self.assigned is not None:
                assigned, self.assigned = self.assigned, None
                moved |= self._on_assigned(assigned)
            polled = self._unapplied(polled, moved)
            if self.feed is not None and time.monotonic() - last_models >= 1.0:
                self._follow_models()
                last_models = time.monotonic()
            if polled:
                self._handle(polled)
            now = time.monotonic()
            if now - last_commit >= d.commit_every:
                self._commit()
                last_commit = now
            if now - last_lag >= 5.0:
                self._update_lag()
                last_lag = now

    def _unapplied(self, polled: dict[TopicPartition, list[Any]],
                   moved: set[tuple[str, int]]) -> dict[TopicPartition, list[Any]]:
        """The polled records still to apply, by partition in a stable order: none from
        partitions the consumer was just moved on, none below a partition's position
        (a rejoin can move the consumer back to the committed offset: a record already in
        the state must never be applied twice)."""
        out = {}
        for tp in sorted(polled, key=lambda t: (t.topic, t.partition)):
            key = (tp.topic, tp.partition)
            if key in moved:
                continue
            start = self.positions.get(key, -1)
            recs = [r for r in polled[tp] if r.offset >= start]
            if recs:
                out[tp] = recs
        return out

    def _follow_models(self) -> None:
        """Swap in each newly announced model once its files match the announcement; a
        model that does not is refused and scoring goes on with the current one."""
        for doc in self.feed.poll():
            version, current = doc.get("version"), self.pipeline.detector.version
            if version == current:
                continue
            try:
                detector = announce.verified(doc)
                self.pipeline.swap(detector)
            except (ModelError, InputFormatError, OSError, KeyError, TypeError) as exc:
                self.metrics.models_refused.inc()
                log.error("announced model %s refused: %s; still scoring with %s", version,
                          exc, current)
                continue
            self.pipeline.rewarm_thresholds()  # its scores live on another scale
            self.detector = detector
            if self.updates:
                self.updates.updater.live = detector
            self.metrics.model.clear()
            self.metrics.model.labels(detector.version).set(1)
            log.info("announced model %s verified and swapped in (was %s)", version, current)

    def _shutdown(self) -> None:
        if self.consumer is not None:
            try:
                self._commit()
            except Exception as exc:
                log.error("final commit failed: %s; the next start replays from the last "
                          "checkpoint", exc)
            self.consumer.close(autocommit=False)
        if self.producer is not None:
            self.producer.close(timeout=10)
        if self.updates:
            self.updates.close()
        if self.feed is not None:
            self.feed.close()
        self.metrics.ready = False
        gc.unfreeze()
        log.info("stopped")

    # ------------------------------------------------------------------ state
    def _on_assigned(self, assigned: list[TopicPartition]) -> set[tuple[str, int]]:
        """After a rebalance: partitions this daemon already holds state for keep it (the
        consumer is moved back to where that state stands, since a rejoin may reset it to
        the committed offsets); anything new means restoring from the checkpoint."""
        current = {(tp.topic, tp.partition) for tp in assigned}
        self.metrics.lag.clear()  # partitions given up keep no stale lag
        if self.restored and current <= self.owned:
            log.info("rebalance kept this daemon's partitions; state carries on at %s",
                     {tp: self.positions.get(tp) for tp in current})
            # partitions given up are not ours to commit or watch any more
            self.positions = {tp: o for tp, o in self.positions.items() if tp in current}
            self._seek_to_state(assigned)
            self.owned = current
            return current
        moved = self.restore(assigned)
        self.owned = current
        return moved

    def restore(self, assigned: list[TopicPartition]) -> set[tuple[str, int]]:
        """Resume from the checkpoint that matches the group's committed offsets and move
        the consumer to the offsets that state corresponds to. Returns those partitions:
        records already fetched for them are stale. Runs at start, after every
        (re)assignment and after a failed delivery, so state and positions always agree."""
        committed = {}
        for tp in assigned:
            offset = self.consumer.committed(tp)
            if offset is not None:
                committed[(tp.topic, tp.partition)] = offset
        self._fresh_state()
        cp = self.store.resume_point(committed)
        if cp is not None:
            self.pipeline.restore(cp.pipeline)
            if self.updates:
                self.updates.restore(cp.pipeline.arrays)
            if cp.decoder is not None and hasattr(self.decoder, "restore"):
                self.decoder.restore(cp.decoder)
            # partitions the checkpoint does not cover (received from another member)
            # start where the group committed them; the rest where the state stands
            mine = {(tp.topic, tp.partition) for tp in assigned}
            self.positions = {**committed,
                              **{tp: o for tp, o in cp.offsets.items() if tp in mine}}
            self.counted = self.pipeline.counts()
            log.info("resumed from %s: %d keys, %d open alarms, offsets %s", cp.path.name,
                     len(self.pipeline.keys.names), len(self.pipeline.events.open), cp.offsets)
        else:
            self.positions = committed
            log.info("no checkpoint to resume from: fresh state at offsets %s",
                     committed or "(group start)")
        self._seek_to_state(assigned)
        self.restored = True
        self.metrics.ready = True
        return {(tp.topic, tp.partition) for tp in assigned}

    def _seek_to_state(self, assigned: list[TopicPartition]) -> None:
        """Move the consumer to where the state stands for each partition. Always seek: the
        records of the poll that reported the assignment are dropped, so a partition with
        nothing applied yet must go back to its start too, or those records are skipped.
        A start chosen by ``auto_offset_reset`` is resolved and kept as the position, so
        a later rebalance returns to the same offset."""
        for tp in assigned:
            key = (tp.topic, tp.partition)
            offset = self.positions.get(key)
            if offset is not None:
                self.consumer.seek(tp, offset)
                continue
            if self.config.daemon.auto_offset_reset == "earliest":
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek_to_end(tp)
            self.positions[key] = self.consumer.position(tp)

    # ------------------------------------------------------------------ one poll
    def _handle(self, polled: dict[TopicPartition, list[Any]]) -> None:
        start = time.perf_counter()
        records = [r for recs in polled.values() for r in recs]
        if self.exactly_once and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True
        batch = self.batches.decode(records)
        first = self.pipeline.next_row
        self.provenance.record(first, batch)
        out = self.pipeline.process(batch.frame)
        if self.updates and len(batch.frame):
            before = self.pipeline.detector.version
            self.updates.step(self.pipeline, float(batch.frame.timestamps.max()))
            if self.pipeline.detector.version != before:
                self.metrics.model.clear()
                self.metrics.model.labels(self.pipeline.detector.version).set(1)
        send = self.producer.send
        for event in out.events:
            self.pending.append(send(self.config.daemon.output_topic, value=orjson.dumps(event),
                                     key=event["key"].encode()))
            self.metrics.events.labels(event["status"]).inc()
        for dead in batch.dead + batch.rejected(first, out.row, out.status):
            self._dead_letter(dead)
        for tp, recs in polled.items():
            self.metrics.consumed.labels(tp.topic).inc(len(recs))
            self.positions[(tp.topic, tp.partition)] = recs[-1].offset + 1
        self.dirty = True
        self._count_points()
        self.metrics.latency.observe(time.perf_counter() - start)

    def _dead_letter(self, dead: DeadLetter) -> None:
        raw, headers = dead.raw, dead.headers()
        if len(raw) > MAX_DEAD_LETTER_BYTES:
            raw = raw[:MAX_DEAD_LETTER_BYTES]
            headers.append(("streamae.truncated_from", str(len(dead.raw)).encode()))
        self.pending.append(self.producer.send(self.config.daemon.dead_letter_topic, value=raw,
                                               headers=headers))
        self.metrics.dead.labels(dead.kind).inc()
        log.debug("dead letter %s[%d]@%d: %s", dead.topic, dead.partition, dead.offset,
                  dead.reason)

    def _count_points(self) -> None:
        counts = self.pipeline.counts()
        for name, total in counts.items():
            if total > self.counted[name]:
                self.metrics.points.labels(name).inc(total - self.counted[name])
        self.counted = counts
        self.metrics.open_alarms.set(len(self.pipeline.events.open))
        self.metrics.keys.set(len(self.pipeline.keys.names))

    # ------------------------------------------------------------------ durability
    def _commit(self) -> None:
        """Make everything handled so far durable, in the order the checkpoint module
        documents; on a delivery failure, replay from the last durable point."""
        if not self.restored or not self.dirty:
            return
        start = time.perf_counter()
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                   for (t, p), o in self.positions.items()}
        try:
            if self.exactly_once:
                self.store.save(self.positions, self._state(), self._decoder_state())
                self.producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
                self.producer.commit_transaction()
                self.in_transaction = False
            else:
                self.producer.flush()
                failed = [f for f in self.pending if f.failed()]
                if failed:
                    raise DeliveryError(f"{len(failed)} sends failed: {failed[0].exception}")
                self.store.save(self.positions, self._state(), self._decoder_state())
                self.consumer.commit(offsets)
        except KafkaError as exc:
            self.metrics.commit_failures.inc()
            self._recover(exc)
            return
        self.pending.clear()
        self.dirty = False
        self.metrics.commits.inc()
        self.metrics.commit_seconds.observe(time.perf_counter() - start)

    def _recover(self, exc: Exception) -> None:
        if not self.exactly_once and not isinstance(exc, DeliveryError):
            # events are durable and the checkpoint written; the next commit carries the
            # offsets (a crash before then is matched to this checkpoint on restart)
            log.warning("offset commit failed (%s); retrying at the next interval", exc)
            return
        log.warning("commit failed (%s); replaying from the last durable checkpoint", exc)
        if self.exactly_once and self.in_transaction:
            try:
                self.producer.abort_transaction()
            except KafkaError as abort_exc:
                log.error("could not abort the transaction (%s); restarting the producer",
                          abort_exc)
                self.producer.close(timeout=5)
                self.producer = clients.producer(self.config.kafka, self.instance_id)
                self.producer.init_transactions()
            self.in_transaction = False
        time.sleep(1.0)
        self.restore(list(self.consumer.assignment()))

    def _state(self):
        state = self.pipeline.state()
        if self.updates:
            state.arrays.update(self.updates.state_arrays())
        return state

    def _decoder_state(self) -> dict[str, Any] | None:
        return self.decoder.state() if hasattr(self.decoder, "state") else None

    def _update_lag(self) -> None:
        for (topic, partition), position in self.positions.items():
            high = self.consumer.highwater(TopicPartition(topic, partition))
            if high is not None:
                self.metrics.lag.labels(topic, str(partition)).set(max(0, high - position))


class _Rebalance(ConsumerRebalanceListener):
    """Notes assignments for the loop (the listener runs inside the client's event loop,
    where blocking client calls are not allowed); the loop restores state after poll."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked and self.daemon.dirty:
            log.warning("partitions %s revoked with work since the last commit; it will be "
                        "replayed by their next owner", sorted(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        self.daemon.assigned = list(self.daemon.consumer.assignment())
