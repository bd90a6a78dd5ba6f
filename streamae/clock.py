"""Clocks (injectable, so time-dependent logic is testable) and timestamp text."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

Clock = Callable[[], float]


def wall_clock() -> float:
    """Processing time: seconds since the epoch."""
    return time.time()


class EventClock:
    """Event time: the newest timestamp seen, so replays are reproducible."""

    def __init__(self) -> None:
        self.now = 0.0

    def advance(self, ts: float) -> None:
        self.now = max(self.now, ts)

    def __call__(self) -> float:
        return self.now


def iso(ts: float) -> str:
    """ISO 8601 UTC text with millisecond precision trimmed when whole."""
    text = str(np.datetime64(int(round(ts * 1000)), "ms"))
    return (text[:-4] if text.endswith(".000") else text) + "Z"
