"""Alertmanager webhook payloads turned into per-key alert-rate series.

Each firing alert counts once (by fingerprint and ``startsAt``, so Alertmanager's repeat
notifications do not inflate the rate) in the tumbling interval (``input.alert_interval``)
holding its ``startsAt``. The key is the alert's labels named by ``input.key_fields``
(default: ``alertname``). An interval is emitted as a point, zeros included, for every key
seen so far once event time (the newest ``startsAt``) is one interval past its end, so an
alert storm and an unusual silence both show. Alerts for intervals already emitted are late:
counted, not scored. The state is plain JSON and is checkpointed with the daemon's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streamae.config import InputConfig
from streamae.formats.base import BadMessage, Point, join_key, load_json, parse_time

MAX_INTERVALS_PER_STEP = 10_000  # after a longer silence the series restarts (a gap)


class AlertRateDecoder:
    def __init__(self, config: InputConfig, channels: list[str], default_key: str,
                 clock: Callable[[], float] = time.time) -> None:
        if len(channels) != 1:
            raise BadMessage(f"alert rates are univariate; the model has channels {channels}")
        self.interval = config.alert_interval
        self.key_fields = config.key_fields if config.key_fields is not None else ["alertname"]
        self.counts: dict[str, dict[int, int]] = {}  # key -> interval index -> new alerts
        self.seen: dict[str, int] = {}  # fingerprint|startsAt -> interval index
        self.next_emit: int | None = None  # first interval not yet emitted
        self.late = 0
        self.max_future, self.clock = config.max_future, clock

    def decode(self, raw: bytes, record_ts: float | None = None) -> list[Point]:
        """The points a message closes. A message is checked whole before it changes any
        state, so one that is dead-lettered (malformed, or ahead of the clock by more than
        ``input.max_future``) counts nothing; one whose every new alert is late is too."""
        doc = load_json(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
            raise BadMessage("expected an Alertmanager webhook object with an 'alerts' list",
                             "missing_field")
        parsed = [self._parse(alert, n) for n, alert in enumerate(doc["alerts"])]
        starts = [start for start, *_ in parsed]
        if starts and self.max_future is not None and max(starts) > self.clock() + self.max_future:
            raise BadMessage(f"startsAt {max(starts):.3f} is more than {self.max_future:g} s "
                             "ahead of the wall clock (input.max_future)", "future")
        newest, late = None, 0
        for start, key, ident in parsed:
            idx = self._count(int(start // self.interval), key, ident)
            if idx is None:
                late += 1
            else:
                newest = idx if newest is None else max(newest, idx)
        if newest is None and late:
            raise BadMessage(f"{late} alert(s) for intervals already emitted (late)", "late")
        return self._emit(newest) if newest is not None else []

    def _parse(self, alert: Any, n: int) -> tuple[float, str | None, str]:
        """An alert's start, its key (None: not firing) and its identity."""
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
            raise BadMessage(f"alert {n}: expected an object with 'labels'", "missing_field")
        if "startsAt" not in alert:
            raise BadMessage(f"alert {n}: missing 'startsAt'", "missing_field")
        start = parse_time(alert["startsAt"], field="startsAt")
        labels = alert["labels"]
        ident = f"{alert.get('fingerprint') or sorted(labels.items())}|{alert['startsAt']}"
        if alert.get("status", "firing") != "firing":
            return start, None, ident
        missing = [k for k in self.key_fields if k not in labels]
        if missing:
            raise BadMessage(f"alert {n}: label(s) {missing} (input.key_fields) missing",
                             "missing_field")
        key = join_key([(k, str(labels[k])) for k in self.key_fields]) if self.key_fields \
            else "alerts"
        return start, key, ident

    def _count(self, idx: int, key: str | None, ident: str) -> int | None:
        """Count one firing alert in its interval; None when that interval is emitted."""
        if key is None or ident in self.seen:
            return idx  # resolved, or a repeat notification of an alert already counted
        if self.next_emit is not None and idx < self.next_emit:
            self.late += 1
            return None
        self.seen[ident] = idx
        bucket = self.counts.setdefault(key, {})
        bucket[idx] = bucket.get(idx, 0) + 1
        return idx

    def _emit(self, newest: int) -> list[Point]:
        """Close every interval at least one interval older than the newest alert."""
        upto = newest - 1  # exclusive: intervals < upto are closed
        if self.next_emit is None:
            firsts = [min(b) for b in self.counts.values() if b]
            self.next_emit = min(firsts) if firsts else upto
        if upto - self.next_emit > MAX_INTERVALS_PER_STEP:
            self.next_emit = upto - MAX_INTERVALS_PER_STEP
        points = []
        for idx in range(self.next_emit, max(upto, self.next_emit)):
            ts = (idx + 1) * self.interval  # an interval is stamped with its end
            for key, bucket in self.counts.items():
                points.append(Point(ts, key, [float(bucket.pop(idx, 0))]))
        self.next_emit = max(upto, self.next_emit)
        self.seen = {k: v for k, v in self.seen.items() if v >= self.next_emit - 1}
        for bucket in self.counts.values():
            for idx in [i for i in bucket if i < self.next_emit]:
                del bucket[idx]
        return points

    def state(self) -> dict[str, Any]:
        return {"counts": {k: {str(i): c for i, c in b.items()} for k, b in self.counts.items()},
                "seen": self.seen, "next_emit": self.next_emit, "late": self.late}

    def restore(self, state: dict[str, Any]) -> None:
        self.counts = {k: {int(i): c for i, c in b.items()} for k, b in state["counts"].items()}
        self.seen, self.next_emit = dict(state["seen"]), state["next_emit"]
        self.late = state["late"]
