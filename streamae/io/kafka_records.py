"""Kafka records -> one columnar frame per poll, plus the dead letters it produced.

Each row remembers which message it came from, so a point the windows later reject
(late, duplicate, non-finite under ``drop``) is dead-lettered with its raw message, and
events can name the input offsets behind them.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamae.formats import BadMessage, Decoder, Point
from streamae.types import Frame
from streamae.windows import DROPPED_FROM, STATUS_NAMES


# control characters in a key: numpy's text arrays drop trailing NULs, so such a key
# would not be the same key in every part of the state (and no log or label shows it)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

SHOWN = 3  # rejected points a dead letter's reason names (the count says how many)
REJECTED = {"late": "older than the key's newest point",
            "duplicate": "same timestamp as the key's previous point",
            "nan_dropped": "non-finite value (window.nan_policy: drop)"}


@dataclass
class DeadLetter:
    """A rejected input message and why: raw bytes go out unchanged, the rest in headers."""

    raw: bytes
    reason: str
    kind: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [("streamae.reason", self.reason.encode()), ("streamae.kind", self.kind.encode()),
                ("streamae.topic", self.topic.encode()),
                ("streamae.partition", str(self.partition).encode()),
                ("streamae.offset", str(self.offset).encode()),
                ("streamae.timestamp_ms", str(self.timestamp_ms).encode())]


@dataclass
class DecodedBatch:
    frame: Frame
    message: np.ndarray  # per row: index into ``records``
    records: list[Any]  # ConsumerRecord-like: topic, partition, offset, timestamp, value
    dead: list[DeadLetter] = field(default_factory=list)

    def rejected(self, first_row: int, rows: np.ndarray, status: np.ndarray) -> list[DeadLetter]:
        """Dead letters for rows the windows dropped (``rows`` are pipeline row ids; other
        statuses, warm-up included, are accepted points): one per message, naming its
        rejected points (a re-sent batch of thousands of points is one dead letter, not
        thousands of copies of itself)."""
        by_message: dict[int, list[tuple[str, int]]] = {}
        for j in np.flatnonzero((status >= DROPPED_FROM) & (status < len(STATUS_NAMES))):
            i = int(rows[j]) - first_row
            by_message.setdefault(int(self.message[i]), []).append((STATUS_NAMES[status[j]], i))
        out = []
        for m, points in by_message.items():
            said = [f"{name}: key {self.frame.keys[i]!r} at {self.frame.timestamps[i]:.3f}: "
                    f"{REJECTED[name]}" for name, i in points[:SHOWN]]
            more = f"; and {len(points) - SHOWN} more" if len(points) > SHOWN else ""
            head = f"{len(points)} points rejected: " if len(points) > 1 else ""
            out.append(dead_letter(self.records[m], head + "; ".join(said) + more,
                                   points[0][0]))
        return out


def dead_letter(rec: Any, reason: str, kind: str) -> DeadLetter:
    return DeadLetter(rec.value if rec.value is not None else b"", reason, kind, rec.topic,
                      rec.partition, rec.offset, rec.timestamp or 0)


class BatchDecoder:
    """Decode polled records with one format decoder; bad messages become dead letters."""

    def __init__(self, decoder: Decoder, channels: list[str], max_message_bytes: int,
                 max_future: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.decoder, self.channels = decoder, channels
        self.max_bytes, self.max_future, self.clock = max_message_bytes, max_future, clock

    def decode(self, records: list[Any]) -> DecodedBatch:
        fast = getattr(self.decoder, "decode_batch", None)
        latest = math.inf if self.max_future is None else self.clock() + self.max_future
        if fast and all(r.value is not None and len(r.value) <= self.max_bytes for r in records):
            columns = fast([r.value for r in records])
            if (columns is not None and not (columns[0] > latest).any()
                    and not _CONTROL.search("".join(columns[1]))):
                ts, keys, values = columns
                frame = Frame(ts, np.array(keys, dtype=object), values, self.channels)
                return DecodedBatch(frame, np.arange(len(records)), records)
        points: list[Point] = []
        message: list[int] = []
        dead: list[DeadLetter] = []
        for i, rec in enumerate(records):
            raw = rec.value
            if raw is None:
                dead.append(dead_letter(rec, "empty message (tombstone)", "parse"))
                continue
            if len(raw) > self.max_bytes:
                dead.append(dead_letter(rec, f"message of {len(raw)} bytes exceeds "
                                        f"input.max_message_bytes ({self.max_bytes})",
                                        "oversized"))
                continue
            try:
                got = self.decoder.decode(raw, rec.timestamp / 1000 if rec.timestamp else None)
            except BadMessage as exc:
                dead.append(dead_letter(rec, str(exc), exc.kind))
                continue
            except Exception as exc:  # a parser bug must not stop the daemon or lose the input
                dead.append(dead_letter(rec, f"decoder error {type(exc).__name__}: {exc}",
                                        "decoder_error"))
                continue
            bad_key = next((p.key for p in got if _CONTROL.search(p.key)), None)
            if bad_key is not None:
                dead.append(dead_letter(rec, f"key {bad_key!r} holds a control character",
                                        "bad_key"))
                continue
            ahead = max((p.ts for p in got), default=-math.inf)
            if ahead > latest:  # one bad clock must not hold its key back for good
                dead.append(dead_letter(rec, f"timestamp {ahead:.3f} is more than "
                                        f"{self.max_future:g} s ahead of the wall clock "
                                        "(input.max_future)", "future"))
                continue
            points += got
            message += [i] * len(got)
        if len(self.channels) > 1:
            points, message = _coalesce(points, message)
        n = len(points)
        frame = Frame(np.fromiter((p.ts for p in points), np.float64, n),
                      np.array([p.key for p in points], dtype=object),
                      np.array([p.values for p in points], dtype=np.float32).reshape(
                          n, len(self.channels)), self.channels)
        return DecodedBatch(frame, np.array(message, dtype=np.int64), records, dead)


def _coalesce(points: list[Point], message: list[int]) -> tuple[list[Point], list[int]]:
    """Merge rows of one key at one timestamp whose channels do not overlap (sources that
    write one sample per message, such as Prometheus adapters, for a multichannel model)."""
    first: dict[tuple[str, float], int] = {}
    out_p: list[Point] = []
    out_m: list[int] = []
    for p, m in zip(points, message):
        j = first.get((p.key, p.ts))
        if j is not None:
            have = out_p[j].values
            if all(math.isnan(a) or math.isnan(b) for a, b in zip(have, p.values)):
                out_p[j] = Point(p.ts, p.key, [b if math.isnan(a) else a
                                               for a, b in zip(have, p.values)])
                continue
        first[(p.key, p.ts)] = len(out_p)
        out_p.append(p)
        out_m.append(m)
    return out_p, out_m


class Provenance:
    """Row id -> (topic, partition, offset) for recent rows, in a fixed-size ring."""

    def __init__(self, size: int = 1 << 18) -> None:
        self.size = size
        self.row = np.full(size, -1, dtype=np.int64)
        self.part = np.zeros(size, dtype=np.int32)
        self.offset = np.zeros(size, dtype=np.int64)
        self.partitions: list[tuple[str, int]] = []
        self._index: dict[tuple[str, int], int] = {}

    def record(self, first_row: int, batch: DecodedBatch) -> None:
        n = len(batch.message)
        if not n:
            return
        recs = batch.records
        ids = np.array([self._part(r.topic, r.partition) for r in recs],
                       dtype=np.int32)[batch.message]
        offs = np.fromiter((r.offset for r in recs), np.int64, len(recs))[batch.message]
        rows = np.arange(first_row, first_row + n, dtype=np.int64)
        slots = rows % self.size
        self.row[slots], self.part[slots], self.offset[slots] = rows, ids, offs

    def _part(self, topic: str, partition: int) -> int:
        key = (topic, partition)
        if key not in self._index:
            self._index[key] = len(self.partitions)
            self.partitions.append(key)
        return self._index[key]

    def __call__(self, row: int) -> dict[str, Any] | None:
        slot = row % self.size
        if row < 0 or self.row[slot] != row:  # negative: a point taken over from elsewhere
            return None
        topic, partition = self.partitions[self.part[slot]]
        return {"topic": topic, "partition": partition, "offset": int(self.offset[slot])}
