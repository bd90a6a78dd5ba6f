"""What every input format shares: the point shape, the error, time and number parsing."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np
import orjson

from streamae.errors import InputFormatError

#: Epoch seconds accepted as event time: 1970-01-01 .. 2200-01-01.
MAX_TS = 7_258_118_400.0
UNIT_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


class Point(NamedTuple):
    """One row: event time (epoch s), key, one value per model channel (nan: absent)."""

    ts: float
    key: str
    values: list[float]


class BadMessage(InputFormatError):
    """A message that cannot become points; ``kind`` names the rule it broke."""

    def __init__(self, reason: str, kind: str = "invalid") -> None:
        super().__init__(reason)
        self.kind = kind


def load_json(raw: bytes) -> Any:
    """Parse JSON; tolerate the NaN/Infinity literals many producers write (an infinite
    or overflowing number is then rejected where it is read, see :func:`parse_number`).
    Text must be valid UTF-8 and hold no lone surrogate (``\\ud800``): such a string
    could not be written out again as an event or a dead letter's reason."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage(f"not valid UTF-8: {exc}", "parse") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BadMessage(f"not valid JSON: {exc}", "parse") from None
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadMessage("not valid JSON text: a string holds a lone surrogate escape",
                         "parse") from None
    return doc


def parse_time(value: Any, unit: str = "auto", field: str = "timestamp") -> float:
    """ISO 8601 text or an epoch number (``unit`` s/ms/us/ns, or auto by magnitude)."""
    kind = type(value)
    if (kind is float or kind is int) and 0.0 < value < MAX_TS and unit in ("auto", "s"):
        return float(value)  # the common case: epoch seconds
    if isinstance(value, bool) or value is None:
        raise BadMessage(f"field '{field}' must be a time, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not _numeric(text):
            try:
                return _check_ts(_iso(text), value, field)
            except ValueError:
                raise BadMessage(f"field '{field}' is not ISO 8601 or epoch time: "
                                 f"{value[:64]!r}") from None
        value = float(text)
    if not isinstance(value, (int, float)):
        raise BadMessage(f"field '{field}' must be a time, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise BadMessage(f"field '{field}' is not finite: {value!r}")
    if unit == "auto":
        unit = epoch_unit(value)
    return _check_ts(value * UNIT_SCALE[unit], value, field)


def epoch_unit(value: float) -> str:
    """The unit of an epoch number by its magnitude (seconds up to year 5138)."""
    size = abs(value)
    return "ns" if size >= 1e17 else "us" if size >= 1e14 else "ms" if size >= 1e11 else "s"


def epoch_seconds(values: np.ndarray, unit: str = "auto") -> np.ndarray:
    """:func:`parse_time`'s rule for a column of epoch numbers: seconds, each value in its
    own unit when ``unit`` is auto."""
    values = np.asarray(values, dtype=np.float64)
    if unit != "auto":
        return values * UNIT_SCALE[unit]
    size = np.abs(values)
    scale = np.select([size >= 1e17, size >= 1e14, size >= 1e11], [1e-9, 1e-6, 1e-3], 1.0)
    return values * scale


def _numeric(text: str) -> bool:
    return text.strip().lstrip("+-").replace(".", "", 1).isdigit()


def _iso(text: str) -> float:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _check_ts(ts: float, raw: Any, field: str) -> float:
    if not 0.0 < ts < MAX_TS:
        raise BadMessage(f"field '{field}' is outside 1970..2200: {raw!r}", "invalid")
    return ts


def parse_number(value: Any, field: str, max_abs: float, text_ok: bool = False) -> float:
    """A finite-or-nan measurement within ``max_abs``; ``None`` is a missing value (nan)."""
    kind = type(value)
    if (kind is float or kind is int) and -max_abs <= value <= max_abs:
        return float(value)  # the common case (nan fails the comparison: checked below)
    if value is None:
        return math.nan
    if isinstance(value, str) and text_ok:
        try:
            value = float(value)
        except ValueError:
            raise BadMessage(f"field '{field}' is not a number: {value[:64]!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadMessage(f"field '{field}' must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isinf(value) or abs(value) > max_abs:  # nan (a missing value) compares False
        raise BadMessage(f"field '{field}' = {value:g} exceeds the limit {max_abs:g} "
                         "(input.max_abs_value)", "out_of_range")
    return value


def join_key(parts: list[tuple[str, str]], bare_single: bool = True) -> str:
    """A readable, stable key from (name, value) pairs: ``v`` alone, or ``a=x,b=y``."""
    if bare_single and len(parts) == 1:
        return parts[0][1]
    return ",".join(f"{k}={v}" for k, v in parts)
