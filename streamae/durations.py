"""Human durations ("90s", "5m", "2h", "1d") to seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: str | int | float) -> float:
    """Return seconds for a number (already seconds) or a string such as ``"5m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _PATTERN.match(str(value))
    if not match:
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]
