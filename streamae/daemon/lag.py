"""Consumer lag, watched from a thread with a client of its own.

The daemon's loop cannot be trusted to report its own lag: while it waits on a broker
(an outage, a stuck commit) it updates nothing, and its view of a partition's end comes
from its own fetches. The watcher asks the brokers every ``interval`` seconds for each
input partition's end offset and the group's committed offset, so both gauges tell the
truth from the start and while the loop is stuck:

* ``streamae_committed_lag``: end minus the group's committed offset, for every input
  partition (what a restart would replay, and what is not yet durable);
* ``streamae_consumer_lag``: end minus this daemon's position, for the partitions it owns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from streamae.config import KafkaConfig
from streamae.daemon.clients import client_settings
from streamae.daemon.metrics import DaemonMetrics

log = logging.getLogger(__name__)
Offsets = dict[tuple[str, int], int]


class LagWatcher:
    """Sets the lag gauges every ``interval`` s until :meth:`stop`."""

    def __init__(self, kafka: KafkaConfig, group_id: str, topics: list[str],
                 positions: Callable[[], Offsets], metrics: DaemonMetrics,
                 interval: float = 5.0) -> None:
        self.kafka, self.group_id, self.topics = kafka, group_id, topics
        self.positions, self.metrics, self.interval = positions, metrics, interval
        self.client: KafkaConsumer | None = None
        self.stopping = threading.Event()
        self.failing = False
        self.shown: set[tuple[str, str]] = set()
        self.thread = threading.Thread(target=self._run, name="streamae-lag", daemon=True)

    def start(self) -> LagWatcher:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop reading; a reading stuck on absent brokers is left to its daemon thread,
        so a stop never waits for them."""
        self.stopping.set()
        self.thread.join(2.0)
        if self.client is not None and not self.thread.is_alive():
            self.client.close(autocommit=False)

    def _run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.once()
                if self.failing:
                    log.info("lag readable again")
                self.failing = False
            except Exception as exc:  # the brokers may be away: keep the last figures
                if not self.failing:
                    log.warning("could not read the consumer lag (%s); retrying every %.0f s",
                                exc, self.interval)
                self.failing = True
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def once(self) -> None:
        """One reading of every gauge."""
        if self.client is None:
            # a group member of its own would join the group: this one only reads offsets
            self.client = KafkaConsumer(**client_settings(self.kafka), group_id=self.group_id,
                                        enable_auto_commit=False, request_timeout_ms=10_000)
        tps = [TopicPartition(t, p) for t in self.topics
               for p in sorted(self.client.partitions_for_topic(t) or ())]
        if not tps:
            return
        end = self.client.end_offsets(tps, timeout_ms=10_000)
        start = self.client.beginning_offsets(tps, timeout_ms=10_000)
        positions = dict(self.positions())
        owned = set()
        for tp in tps:
            label = (tp.topic, str(tp.partition))
            committed = self.client.committed(tp, timeout_ms=10_000)
            done = committed if committed is not None else start[tp]
            self.metrics.committed_lag.labels(*label).set(max(0, end[tp] - done))
            position = positions.get((tp.topic, tp.partition))
            if position is not None:
                self.metrics.lag.labels(*label).set(max(0, end[tp] - position))
                owned.add(label)
        for labels in self.shown - owned:  # partitions given up
            self.metrics.lag.remove(*labels)
        self.shown = owned
