"""Human durations ("90s", "5m", "2h", "1d") to seconds, and spans of time or points."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
POINTS_TEXT = re.compile(r"^\s*(\d+)\s*(?:p|pts|points?)\s*$")


def parse_duration(value: str | int | float) -> float:
    """Return seconds for a number (already seconds) or a string such as ``"5m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = DURATION_TEXT.match(str(value))
    if not match:
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class Span:
    """A stretch of a key's stream: ``amount`` seconds of event time, or ``amount`` of the
    key's scored points (which follows the key's own sampling rate)."""

    amount: float
    points: bool = False

    @staticmethod
    def parse(value: str | int | float | Span) -> Span:
        """``600``, ``"10m"`` (time) or ``"16 points"`` / ``"16p"`` (points)."""
        if isinstance(value, Span):
            return value
        if isinstance(value, str):
            match = POINTS_TEXT.match(value)
            if match:
                return Span(float(match.group(1)), True)
        try:
            return Span(parse_duration(value))
        except ValueError:
            raise ValueError("a span is a duration ('30s', '5m', '1h', seconds) or a count "
                             "of the key's points ('16 points')") from None

    def __str__(self) -> str:
        if self.points:
            return f"{int(self.amount)} points"
        return f"{self.amount:g}s"
