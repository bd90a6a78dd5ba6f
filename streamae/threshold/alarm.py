"""Alarm stage: threshold crossings -> open / update / resolve with hysteresis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamae.config import AlarmConfig
from streamae.threshold.base import KeyedState
from streamae.threshold.alarm_kernel import (A_ACTIVE, A_STRONG, EV_NONE, EV_OPEN, EV_RESOLVE,
                                            EV_UPDATE, alarm_batch, new_alarm_state)

EVENT_NAMES = {EV_OPEN: "open", EV_UPDATE: "update", EV_RESOLVE: "resolved"}

__all__ = ["Alarm", "AlarmOutput", "EVENT_NAMES", "EV_NONE", "EV_OPEN", "EV_UPDATE", "EV_RESOLVE"]


@dataclass
class AlarmOutput:
    """Per point: inside an open alarm, event code, event time (start/end), new peak, and
    when its key was last in alarm or over its threshold (-inf: never)."""

    anomaly: np.ndarray
    event: np.ndarray
    event_ts: np.ndarray
    peak: np.ndarray
    last_hot: np.ndarray


class Alarm(KeyedState):
    """Hysteresis per key, in event-time units (see :class:`~streamae.config.AlarmConfig`)."""

    def __init__(self, config: AlarmConfig, capacity: int = 64) -> None:
        self.config = config
        spans = [config.min_duration, config.resolve_after, config.suppress,
                 config.update_every, config.prune_memory]
        self.spans = np.array([s.amount for s in spans], dtype=np.float64)
        self.points = np.array([s.points for s in spans], dtype=np.bool_)
        super().__init__(new_alarm_state(1)[0], capacity)

    def apply(self, slots: np.ndarray, ts: np.ndarray, scores: np.ndarray,
              thresholds: np.ndarray, bases: np.ndarray | None = None) -> AlarmOutput:
        """``bases``: each point's typical score of its key, from which alarm levels are
        measured (None: 0, levels are ratios to the threshold)."""
        n = len(slots)
        out = AlarmOutput(np.empty(n, dtype=np.bool_), np.empty(n, dtype=np.int8),
                          np.empty(n), np.empty(n, dtype=np.bool_), np.empty(n))
        c = self.config
        bases = np.zeros(n) if bases is None else np.asarray(bases, dtype=np.float64)
        alarm_batch(slots, ts, scores.astype(np.float64), thresholds, bases, self.state,
                    c.enter_level, c.exit_level, c.min_hits, c.hit_window, self.spans,
                    self.points, c.prune, out.anomaly, out.event, out.event_ts, out.peak,
                    out.last_hot)
        return out

    def forget_peaks(self, slots: np.ndarray) -> None:
        """The given keys' strongest recent alarm peak no longer prunes weaker alarms
        (their threshold started again: peaks measured against the old one say nothing)."""
        self.ensure(int(slots.max()) + 1 if len(slots) else 0)
        self.state[slots, A_STRONG] = np.nan

    def open_alarms(self) -> int:
        return int(np.sum(self.state[:, A_ACTIVE] != 0.0))
