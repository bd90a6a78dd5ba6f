"""The daemon: Kafka in -> decode -> pipeline -> Kafka out, with checkpointed state.

One loop, one thread: poll, decode (bad messages to the dead-letter topic), score with the
shared :class:`~streamae.pipeline.Pipeline`, send events; every ``daemon.commit_every`` make
the interval durable (see :mod:`streamae.daemon.checkpoint` for the order of a commit).
Partitions coming and going are handled in :mod:`streamae.daemon.partitions`, commits and
their recovery in :mod:`streamae.daemon.commit`, bounded client calls in
:mod:`streamae.daemon.calls`.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from kafka import TopicPartition

from streamae.clock import wall_clock
from streamae.config import Config
from streamae.daemon import announce, clients, signing
from streamae.daemon.calls import close_producer
from streamae.daemon.checkpoint import CheckpointStore, Offsets
from streamae.daemon.commit import Committer
from streamae.daemon.lag import LagWatcher
from streamae.daemon.metrics import DaemonMetrics, serve
from streamae.daemon.ownership import KeyOwners
from streamae.daemon.partitions import Partitions, Rebalance
from streamae.daemon.sink import KafkaSink
from streamae.daemon.state_topic import Partition, StateTopic, topic_options
from streamae.daemon.updates import DaemonUpdates, starting_model
from streamae.io.kafka_records import BatchDecoder, Provenance
from streamae.errors import InputFormatError, ModelError
from streamae.formats import build_decoder
from streamae.models.detector import Detector
from streamae.pipeline import Pipeline
from streamae.windows import STATUS_NAMES

log = logging.getLogger(__name__)


class Daemon(Partitions, Committer, KafkaSink):
    """Long-running scorer for the topics in ``config.input`` (the fleet's model updater,
    :class:`~streamae.daemon.fleet.FleetUpdater`, is the same loop sending nothing but
    model announcements)."""

    lag_every = 5.0  # seconds between readings of the lag gauges

    def __init__(self, config: Config, detector: Detector) -> None:
        detector = starting_model(config, detector)
        self.config = config
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
        self._fresh_state(detector)
        self.consumer = self.producer = None
        self.restored = False
        self.in_transaction = False
        self.assigned: list[TopicPartition] | None = None
        self.owned: set[Partition] = set()
        self.feed: announce.Follower | None = None
        self.event_time = -np.inf  # newest input timestamp seen (the updater's clock)
        self.state_topic = (StateTopic(config.kafka, config.daemon.state_topic,
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

    def _fresh_state(self, model: Detector | None = None) -> None:
        """Empty key state on the live model (``model`` at start, the pipeline's later: a
        model the updater accepts is swapped into the pipeline, the one live reference)."""
        self.provenance = Provenance()
        live = model or self.pipeline.detector
        self.pipeline = Pipeline(live, self.config, wall_clock, locate=self.provenance)
        if self.updates:
            self.updates.attach(self.pipeline)
        self.decoder = build_decoder(self.config.input, live.channels,
                                     self.config.data.default_key)
        self.batches = BatchDecoder(self.decoder, live.channels,
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
            self._connect()
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

    def _connect(self) -> None:
        """Check access, create missing output topics, warm the pipeline up, then open the
        producer and the consumer and join the group (and the control and model topics)."""
        d, k = self.config.daemon, self.config.kafka
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
        if self.state_topic:
            try:
                clients.ensure_topics(k, [d.state_topic], widest, configs=topic_options())
            except Exception as exc:
                log.warning("could not check/create the state topic %s: %s", d.state_topic,
                            exc)
        self.consumer.subscribe(self.config.input.topics, listener=Rebalance(self))
        if self.updates:
            self.updates.open_control()
        if d.models_topic:
            self.feed = announce.Follower(k, d.models_topic)
            self._follow_models(self.feed.current())  # before any state is restored
        log.info("consuming %s as group %s (%s), events -> %s, dead letters -> %s",
                 ",".join(self.config.input.topics), d.group_id, d.delivery,
                 d.output_topic, d.dead_letter_topic)

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
                self._every_second()
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

    def _follow_models(self, docs: list[dict[str, Any]] | None = None) -> None:
        """Swap in each newly announced model (``docs``, else the feed's new ones) once its
        files match the announcement; a model that does not is refused and scoring goes
        on with the current one."""
        for doc in self.feed.poll() if docs is None else docs:
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
            self._swapped(self.pipeline.detector.version)

    def _swapped(self, version: str) -> None:
        """A new model version is live in this process (the fleet updater announces it)."""

    def _every_second(self) -> None:
        """Work the loop does about once a second, besides polling (none here)."""

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
            # leaving the group waits on the brokers: no longer than a commit step may
            self.consumer.close(autocommit=False,
                                timeout_ms=int(self.config.daemon.commit_timeout * 1000))
        if self.producer is not None:
            close_producer(self.producer, 10.0)
        if self.updates:
            self.updates.close()
        if self.feed is not None:
            self.feed.close()
        if self.state_topic is not None:
            self.state_topic.close()
        self.metrics.ready = False
        gc.unfreeze()
        log.info("stopped")

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
            out.events += self.pipeline.take_notes()  # decisions on alarms: sent with them
        self._send(out, batch, first)
        self.owners.note(polled, batch.message, batch.frame.keys)
        for tp, recs in polled.items():
            self.metrics.consumed.labels(tp.topic).inc(len(recs))
            self.positions[(tp.topic, tp.partition)] = recs[-1].offset + 1
        self.dirty = True
        self._count_points()
        self.metrics.latency.observe(time.perf_counter() - start)

    def _count_points(self) -> None:
        counts = self.pipeline.counts()
        for name, total in counts.items():
            if total > self.counted[name]:
                self.metrics.points.labels(name).inc(total - self.counted[name])
        self.counted = counts
        self.metrics.open_alarms.set(len(self.pipeline.events.open))
        self.metrics.keys.set(len(self.pipeline.keys.names))

    def _state(self):
        state = self.pipeline.state()
        if self.updates:
            state.arrays.update(self.updates.state_arrays())
        return state

    def _decoder_state(self) -> dict[str, Any] | None:
        return self.decoder.state() if hasattr(self.decoder, "state") else None
