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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamae.clock import wall_clock
from streamae.config import Config
from streamae.daemon import announce, clients, signing
from streamae.daemon.changelog import MAX_RECORD_BYTES, Changelog, Partition, Snapshot, \
    topic_options
from streamae.daemon.checkpoint import CheckpointStore, Offsets
from streamae.daemon.decode import BatchDecoder, DeadLetter, Provenance
from streamae.daemon.lag import LagWatcher
from streamae.daemon.metrics import DaemonMetrics, serve
from streamae.daemon.ownership import KeyOwners
from streamae.daemon.updates import DaemonUpdates, starting_model, updater_config
from streamae.errors import InputFormatError, ModelError
from streamae.formats import build_decoder
from streamae.models.detector import Detector
from streamae.pipeline import Pipeline
from streamae.windows import STATUS_NAMES

log = logging.getLogger(__name__)
MAX_DEAD_LETTER_BYTES = 900_000  # keep a dead letter under the producer's request limit


class DeliveryError(KafkaError):
    """Some events of the interval were not acknowledged; the interval is replayed."""


class CommitTimeout(KafkaError):
    """A commit step did not finish within ``daemon.commit_timeout``."""


def bounded(call: Callable[[], Any], timeout: float, what: str,
            abandon: threading.Event | None = None) -> Any:
    """``call()`` on a helper thread, waited for at most ``timeout`` s (or until ``abandon``
    is set). The client's transactional calls wait without a limit, and after a broker
    restart some never return; the caller then gives the client up."""
    done, box = threading.Event(), {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=f"streamae-{what}", daemon=True).start()
    deadline = time.monotonic() + timeout
    while not done.wait(0.1):
        if time.monotonic() > deadline:
            raise CommitTimeout(f"{what} did not finish within {timeout:g} s "
                                "(daemon.commit_timeout)")
        if abandon is not None and abandon.is_set():
            raise CommitTimeout(f"{what} abandoned: the daemon is stopping")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class Daemon:
    """Long-running scorer for the topics in ``config.input``.

    ``role="updater"`` runs the same loop as the fleet's model updater: its own consumer
    group reads the same input, scores it only to learn from it (no events, no dead
    letters), fine-tunes on its device, and announces each accepted version on
    ``daemon.models_topic`` for every scoring daemon to verify and swap in."""

    lag_every = 5.0  # seconds between readings of the lag gauges

    def __init__(self, config: Config, detector: Detector, role: str = "scorer") -> None:
        self.role = role
        if role == "updater":
            config = updater_config(config)
        detector = starting_model(config, detector)
        self.config, self.detector = config, detector
        self.signing_key = signing.key_from_env(config.daemon.signature_key_env)
        # a daemon following announced models adapts its keys itself, without training
        follower = not config.updater.enabled and bool(config.daemon.models_topic)
        self.updates = (DaemonUpdates(config, detector, self.signing_key, self._refused,
                                      follower) if config.updater.enabled or follower else None)
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
        self.owned: set[Partition] = set()
        self.feed: announce.Follower | None = None
        self.unannounced: str | None = None
        self.event_time = -np.inf  # newest input timestamp seen (the updater's clock)
        self.changelog = (Changelog(config.kafka, config.daemon.state_topic,
                                    config.daemon.group_id, self.exactly_once)
                          if config.daemon.state_topic else None)

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
                                    self.config.input.max_message_bytes,
                                    self.config.input.max_future)
        self.positions: Offsets = {}
        self.owners = KeyOwners()
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
        lag = LagWatcher(k, d.group_id, self.config.input.topics, lambda: self.positions,
                         self.metrics, self.lag_every).start()
        clean = True
        try:
            self._wait_for_brokers()
            if self.stopping.is_set():
                return
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
            self.producer = self._new_producer()
            self.consumer = clients.consumer(k, d, self.exactly_once,
                                             group_instance_id=self.instance_id)
            widest = 1
            for topic in self.config.input.topics:
                # have the topic in the client's metadata before joining the group: a
                # leader that joins without it assigns nothing to anyone
                partitions = self.consumer.partitions_for_topic(topic)
                if not partitions:
                    log.warning("input topic %s does not exist (yet); it is picked up when "
                                "it appears", topic)
                widest = max(widest, len(partitions or ()))
            if self.changelog:
                try:
                    clients.ensure_topics(k, [d.state_topic], widest, configs=topic_options())
                except Exception as exc:
                    log.warning("could not check/create the state topic %s: %s", d.state_topic,
                                exc)
            self.consumer.subscribe(self.config.input.topics, listener=_Rebalance(self))
            if self.updates:
                self.updates.open_control()
            if d.models_topic:
                self.feed = announce.Follower(k, d.models_topic)
            log.info("consuming %s as group %s (%s), events -> %s, dead letters -> %s",
                     ",".join(self.config.input.topics), d.group_id, d.delivery,
                     d.output_topic, d.dead_letter_topic)
            self._loop()
        except BaseException as exc:
            # the state may hold a batch whose events were never sent: commit nothing, so
            # the next start replays from the last durable point
            clean = False
            log.error("stopping after an error (%s: %s); nothing more is committed, the next "
                      "start resumes from the last durable checkpoint", type(exc).__name__, exc)
            raise
        finally:
            self._shutdown(commit=clean)
            lag.stop()
            if http:
                http.shutdown()

    def _wait_for_brokers(self, every: float = 5.0) -> None:
        """Until a bootstrap server answers (or the daemon is stopped): one line saying so,
        not-ready on /readyz, and a stop that takes effect at once."""
        where = self.config.kafka.bootstrap_servers
        waited = False
        while not self.stopping.is_set() and not clients.reachable(self.config.kafka):
            if not waited:
                log.warning("no broker at %s yet; retrying every %.0f s", where, every)
            waited = True
            self.stopping.wait(every)
        if waited and not self.stopping.is_set():
            log.info("broker at %s reachable", where)

    def _loop(self) -> None:
        d = self.config.daemon
        last_commit = last_models = time.monotonic()
        while not self.stopping.is_set():
            polled = self.consumer.poll(timeout_ms=int(d.poll_timeout * 1000),
                                        max_records=d.poll_records)
            clients.resume_stalled_join(self.consumer)
            self.metrics.beat()
            # the rebalance listener records assignments during any client call, restore's
            # own included: take each one exactly once, newest last
            moved: set[tuple[str, int]] = set()
            while self.assigned is not None:
                assigned, self.assigned = self.assigned, None
                moved |= self._on_assigned(assigned)
            polled = self._unapplied(polled, moved)
            if time.monotonic() - last_models >= 1.0:
                if self.feed is not None:
                    self._follow_models()
                if self.updates and not polled and self.event_time > -np.inf:
                    self._step_updates()
                if self.unannounced:
                    self._announce()
                last_models = time.monotonic()
            if polled:
                self._handle(polled)
            now = time.monotonic()
            if now - last_commit >= d.commit_every:
                self._commit()
                last_commit = now

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
                signing.check(doc, self.signing_key)
            except signing.SignatureError as exc:
                self._refused(self.config.daemon.models_topic, f"model announcement {version}",
                              exc)
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

    def _refused(self, topic: str, what: str, why: Exception) -> None:
        self.metrics.refused.labels(topic).inc()
        log.error("refused %s on %s: %s", what, topic, why)

    def _step_updates(self) -> None:
        """Between batches (and every second when idle): control commands, then swap in
        a model the updater accepted; the updater process announces it."""
        before = self.pipeline.detector.version
        update = self.updates.step(self.pipeline, self.event_time)
        if update is not None:
            self.metrics.rescaled.inc(len(update.rescale))
            if update.model is None:
                self.metrics.relearnt.inc(len(update.calibration))
        if self.pipeline.detector.version != before:
            self.metrics.model.clear()
            self.metrics.model.labels(self.pipeline.detector.version).set(1)
            if self.role == "updater":
                self.unannounced = self.pipeline.detector.version
                self._announce()

    def _announce(self) -> None:
        """Tell the scoring daemons about the version this updater accepted (retried every
        second until the brokers take it)."""
        version = self.unannounced
        try:
            doc = announce.announcement(Path(self.config.updater.store) / "versions" / version)
            announce.publish(self.config.kafka, self.config.daemon.models_topic, doc,
                             self.signing_key)
        except (KafkaError, OSError, ModelError) as exc:
            log.error("could not announce model %s (%s); retrying", version, exc)
            return
        self.unannounced = None
        log.info("announced model %s on %s", version, self.config.daemon.models_topic)

    def _shutdown(self, commit: bool = True) -> None:
        """Close the clients; a clean stop (``commit``) makes the work so far durable first."""
        if self.consumer is not None:
            if commit:
                try:
                    self._commit()
                except Exception as exc:
                    log.error("final commit failed: %s; the next start replays from the last "
                              "checkpoint", exc)
            # closing leaves the group, which revokes the partitions: the hand-over in the
            # rebalance callback must not commit what this stop did not
            self.restored = False
            self.consumer.close(autocommit=False)
        if self.producer is not None:
            _close(self.producer, 10.0)
        if self.updates:
            self.updates.close()
        if self.feed is not None:
            self.feed.close()
        if self.changelog is not None:
            self.changelog.close()
        self.metrics.ready = False
        gc.unfreeze()
        log.info("stopped")

    # ------------------------------------------------------------------ state
    def _on_assigned(self, assigned: list[TopicPartition]) -> set[Partition]:
        """After a rebalance: partitions kept carry on with the state in memory (the
        consumer is moved back to where it stands, since a rejoin may reset it to the
        committed offsets); partitions given up are forgotten; partitions received take
        their keys' state from the state topic. Returns every assigned partition: records
        already fetched for them are stale."""
        current = {(tp.topic, tp.partition) for tp in assigned}
        if not self.restored:
            self.restore(assigned)
        else:
            gone, new = self.owned - current, current - self.owned
            if gone:
                self._release(gone)
            if new:
                self._receive(new, self._committed(tp for tp in assigned
                                                   if (tp.topic, tp.partition) in new))
            if not gone and not new:
                log.info("rebalance kept this daemon's partitions; state carries on at %s",
                         {tp: self.positions.get(tp) for tp in current})
            self._seek_to_state(assigned)
        self.owned = current
        return current

    def _committed(self, assigned: Any) -> Offsets:
        committed = {}
        for tp in assigned:
            offset = self.consumer.committed(tp)
            if offset is not None:
                committed[(tp.topic, tp.partition)] = offset
        return committed

    def restore(self, assigned: list[TopicPartition]) -> set[Partition]:
        """Resume from the local checkpoint that matches the group's committed offsets,
        take any partition the state topic holds newer state for from there, and move the
        consumer to the offsets that state corresponds to. Returns those partitions:
        records already fetched for them are stale. Runs at start and after a failed
        delivery, so state and positions always agree."""
        mine = {(tp.topic, tp.partition) for tp in assigned}
        committed = self._committed(assigned)
        self._fresh_state()
        cp = self.store.resume_point(committed, mine)
        covered: Offsets = {}
        if cp is not None:
            self.pipeline.restore(cp.pipeline)
            if self.updates:
                self.updates.restore(cp.pipeline.arrays)
            if cp.decoder is not None and hasattr(self.decoder, "restore"):
                self.decoder.restore(cp.decoder)
            covered = {tp: o for tp, o in cp.offsets.items() if tp in mine}
            self.owners = KeyOwners(cp.owners)
            self.counted = self.pipeline.counts()
            log.info("resumed from %s: %d keys, %d open alarms, offsets %s", cp.path.name,
                     len(self.pipeline.keys.names), len(self.pipeline.events.open), covered)
            self.metrics.moves.labels("in", "checkpoint").inc(len(covered))
            elsewhere = set(self.owners.of.values()) - mine
            if elsewhere:
                self._release(elsewhere, quiet=True)
        else:
            log.info("no checkpoint to resume from: fresh state at offsets %s",
                     committed or "(group start)")
        # partitions the checkpoint does not cover start where the group committed them
        self.positions = {**committed, **covered}
        self._receive(mine, committed, covered)
        self._seek_to_state(assigned)
        self.restored = True
        self.metrics.ready = True
        return mine

    def _receive(self, partitions: set[Partition], committed: Offsets,
                 local: Offsets | None = None) -> None:
        """Take each partition's keys from the state topic when it holds state newer than
        what this daemon has (``local``: partitions the checkpoint covered), else start
        the partition at its committed offset: its keys warm up."""
        local = local or {}
        snapshots = self._read_state(partitions)
        for p in sorted(partitions):
            snap, have = snapshots.get(p), local.get(p)
            if snap is not None and have is not None and snap.offset <= have:
                continue  # the checkpoint is as new: keep it
            if snap is not None and have is None and snap.offset < committed.get(p, -1):
                log.warning("state of %s[%d] stops at offset %d, before the committed %d: "
                            "not used; its keys warm up", *p, snap.offset, committed[p])
                snap = None
            if snap is not None and self._take_over(p, snap):
                self.metrics.moves.labels("in", "state_topic").inc()
                continue
            if have is None:
                if p in committed:
                    self.positions[p] = committed[p]
                log.info("received %s[%d] without state: starts at offset %s, its keys warm "
                         "up", *p, committed.get(p, "(reset)"))
                self.metrics.moves.labels("in", "none").inc()

    def _read_state(self, partitions: set[Partition]) -> dict[Partition, Snapshot]:
        if self.changelog is None:
            return {}
        try:
            return self.changelog.read(partitions)
        except (KafkaError, TimeoutError, RuntimeError) as exc:
            log.error("could not read the state topic (%s); partitions %s start from their "
                      "committed offsets", exc, sorted(partitions))
            return {}

    def _take_over(self, partition: Partition, snap: Snapshot) -> bool:
        """Load a partition's keys from its snapshot (replacing what this daemon held)."""
        stale = self.owners.keys_in({partition})[partition]
        try:
            self.pipeline.forget_keys(stale)
            self.pipeline.import_keys(snap.state)
        except InputFormatError as exc:
            log.error("state of %s[%d] does not fit this model (%s); its keys warm up",
                      *partition, exc)
            return False
        self.owners.drop({partition})
        keys = snap.state.meta["keys"]
        self.owners.take(keys, partition)
        self.positions[partition] = snap.offset
        log.info("received %s[%d] with the state of %d keys (%d open alarms) at offset %d",
                 *partition, len(keys), len(snap.state.meta["open_alarms"]), snap.offset)
        return True

    def _release(self, partitions: set[Partition], quiet: bool = False) -> None:
        """Forget the state of partitions this daemon no longer owns: their next owner
        takes it from the state topic."""
        keys = self.owners.drop(partitions)
        self.pipeline.forget_keys(keys)
        for p in partitions:
            self.positions.pop(p, None)
        if not quiet:
            self.metrics.moves.labels("out", "state_topic" if self.changelog else "none").inc(
                len(partitions))
            log.info("gave up %s (%d keys)", ", ".join(f"{t}[{p}]" for t, p in
                                                       sorted(partitions)), len(keys))

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
            self.producer.begin_transaction()  # local: it waits on no broker
            self.in_transaction = True
        batch = self.batches.decode(records)
        first = self.pipeline.next_row
        self.provenance.record(first, batch)
        out = self.pipeline.process(batch.frame)
        if self.updates and len(batch.frame):
            self.event_time = max(self.event_time, float(batch.frame.timestamps.max()))
            self._step_updates()
        if self.role == "scorer":  # the updater process sends neither events nor dead letters
            send = self.producer.send
            for event in out.events:
                self.pending.append(send(self.config.daemon.output_topic,
                                         value=orjson.dumps(event), key=event["key"].encode()))
                self.metrics.events.labels(event["status"]).inc()
            for dead in batch.dead + batch.rejected(first, out.row, out.status):
                self._dead_letter(dead)
        self.owners.note(polled, batch.message, batch.frame.keys)
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
        failed = [f for f in self.pending if f.failed()]
        if failed:
            raise DeliveryError(f"{len(failed)} sends failed: {failed[0].exception}")

    def _save(self) -> None:
        self.store.save(self.positions, self._state(), self._decoder_state(),
                        self.owners.of)

    def _write_state(self) -> list[Any]:
        """Snapshot each partition that moved on since its last snapshot to the state
        topic (sent, not yet acknowledged)."""
        if self.changelog is None or not self.owners.changed:
            return []
        snapshots = {p: Snapshot(self.positions[p], self.pipeline.export_keys(names))
                     for p, names in self.owners.keys_in(self.owners.changed).items()
                     if p in self.positions}
        sent = self.changelog.write(self.producer, snapshots)
        self.owners.changed.clear()
        return sent

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
        if later:
            self.restored = False
            self.assigned = list(self.consumer.assignment())
            return
        while not self.stopping.is_set():
            try:
                self.restore(list(self.consumer.assignment()))
                return
            except KafkaError as restore_exc:
                log.error("could not restore from the last checkpoint (%s); retrying",
                          restore_exc)
                self.stopping.wait(1.0)
        self.restored = False  # stopping: the state in memory is not durable, commit nothing

    def _new_producer(self) -> Any:
        producer = clients.producer(
            self.config.kafka, self.instance_id if self.exactly_once else None,
            **({"max_request_size": MAX_RECORD_BYTES} if self.changelog else {}))
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
        _close(old, 0.0)
        while not self.stopping.is_set():
            try:
                self.producer = self._new_producer()
                log.info("new transactional producer ready")
                return
            except Exception as exc:
                log.error("could not start a transactional producer (%s); retrying", exc)
                self.stopping.wait(1.0)

    def _state(self):
        state = self.pipeline.state()
        if self.updates:
            state.arrays.update(self.updates.state_arrays())
        return state

    def _decoder_state(self) -> dict[str, Any] | None:
        return self.decoder.state() if hasattr(self.decoder, "state") else None


def _close(producer: Any, wait: float) -> None:
    """Close a producer, flushing for at most ``wait`` s; one stuck on absent brokers is
    left behind rather than holding the caller."""
    try:
        bounded(lambda: producer.close(timeout=wait), wait + 5.0, "producer close")
    except Exception as exc:
        log.warning("producer did not close cleanly: %s", exc)


class _Rebalance(ConsumerRebalanceListener):
    """Hands state over before partitions are revoked and notes assignments for the loop
    (the listener runs inside the consumer's event loop, where the consumer itself must
    not be called; the loop restores state after poll)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if not revoked:
            return
        log.info("revoking %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in
                                          sorted(revoked)))
        self.daemon.hand_over()
        if self.daemon.config.daemon.rebalance == "cooperative":
            # only the partitions that move are revoked, and no assignment may follow
            self.daemon.assigned = sorted(set(self.daemon.consumer.assignment()) - set(revoked))

    def on_partitions_lost(self, lost: list[TopicPartition]) -> None:
        # evicted from the group: another member may own these already, so nothing of
        # them is written; uncommitted work on them is replayed by their new owner
        log.warning("lost %s (this daemon was evicted from the group)",
                    ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(lost)))
        self.daemon.dirty = False
        self.daemon.assigned = []

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        self.daemon.assigned = list(self.daemon.consumer.assignment())
