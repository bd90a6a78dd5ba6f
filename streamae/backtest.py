"""Replay history through the live pipeline, in event-time order, on an event-time clock."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamae.clock import EventClock, iso
from streamae.config import Config
from streamae.models.detector import Detector
from streamae.pipeline import OUTPUT_STATUS, Output, Pipeline
from streamae.types import Frame


@dataclass
class BacktestResult:
    """Per input row (input order): score, threshold, alarm flag, status; plus events."""

    frame: Frame
    score: np.ndarray
    threshold: np.ndarray
    anomaly: np.ndarray
    status: np.ndarray
    events: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)


def run_backtest(frame: Frame, detector: Detector, config: Config, batch_rows: int = 4096,
                 on_rows: Callable[[int], None] | None = None,
                 flush: bool = True, sort: bool = True,
                 speed: float | None = None, updater: Any = None) -> BacktestResult:
    """Stream ``frame`` through a fresh :class:`Pipeline` in event-time order (``sort``;
    otherwise in row order, as a topic arrives). ``flush`` scores what the windows still
    hold at the end, as a file ends; a daemon never does (its stream goes on), so
    ``flush=False`` gives exactly the events a daemon emits. ``speed`` paces the replay
    at that multiple of event time (None: as fast as possible). An ``updater``
    (:class:`~streamae.updater.online.OnlineUpdater`) learns from the scored windows and
    swaps models in between batches, on event time."""
    order = frame.event_time_order() if sort else np.arange(len(frame))
    if speed:
        batch_rows = min(batch_rows, 256)
    pace = _Pacer(speed, float(frame.timestamps[order[0]])) if speed and len(order) else None
    clock = EventClock()
    pipeline = Pipeline(detector, config, clock)
    if updater is not None:
        # the updater acts between batches: about one hop per key each, as a daemon polling
        # live keys sees them (256-row batches held a 1-per-minute key's decisions back
        # by up to four hours)
        updater.attach(pipeline)
        per_hop = config.window.hop * max(1, np.unique(frame.keys).size)
        batch_rows = min(batch_rows, 256, per_hop)
    parts: list[Output] = []
    for begin in range(0, len(order), batch_rows):
        idx = order[begin: begin + batch_rows]
        chunk = frame.take(idx)
        clock.advance(float(chunk.timestamps.max()))
        if pace:
            pace.wait(float(chunk.timestamps.min()))
        parts.append(pipeline.process(chunk))
        if updater is not None:
            update = updater.poll(clock())
            if update is not None:
                update.apply(pipeline)
        if on_rows:
            on_rows(len(idx))
    if flush:
        parts.append(pipeline.flush())
    out = Output.concat(parts)
    n = len(frame)
    assert not flush or len(out.row) == n, "every row resolves"
    assert len(np.unique(out.row)) == len(out.row), "no row resolves twice"
    target = order[out.row]  # row id r was the r-th row in event-time order
    score, threshold = np.full(n, np.nan), np.full(n, np.nan)
    anomaly, status = np.zeros(n, dtype=np.int8), np.zeros(n, dtype=np.int8)
    score[target], threshold[target] = out.score, out.threshold
    anomaly[target], status[target] = out.anomaly, out.status
    return BacktestResult(frame, score, threshold, anomaly, status, out.events, pipeline.counts(),
                          updater.summary() if updater is not None else [])


class _Pacer:
    """Sleeps so that event time advances ``speed`` times faster than wall time."""

    def __init__(self, speed: float, t0: float) -> None:
        self.speed, self.t0, self.start = speed, t0, time.monotonic()

    def wait(self, ts: float) -> None:
        delay = (ts - self.t0) / self.speed - (time.monotonic() - self.start)
        if delay > 0:
            time.sleep(delay)


def write_outputs(result: BacktestResult, out_dir: str | Path) -> None:
    """``scores.csv`` (one row per input row, input order) and ``events.jsonl``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    f = result.frame
    with open(out_dir / "scores.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "key", "score", "threshold", "anomaly"])
        for i in range(len(f)):
            writer.writerow([iso(f.timestamps[i]), f.keys[i], _num(result.score[i]),
                             _num(result.threshold[i]), int(result.anomaly[i])])
    with open(out_dir / "events.jsonl", "w") as fh:
        for event in result.events:
            fh.write(json.dumps(event) + "\n")


def _num(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.6g}"


def status_counts(result: BacktestResult) -> dict[str, int]:
    """Rows per output status (ok, unscored warm-up, dropped by a point policy...)."""
    values, counts = np.unique(result.status, return_counts=True)
    return {OUTPUT_STATUS[v]: int(c) for v, c in zip(values, counts)}
