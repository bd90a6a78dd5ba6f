"""Influx line protocol, many lines per message::

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

Integers (``12i``, ``12u``) and floats are measurements; strings and booleans are skipped.
Timestamps are nanoseconds unless ``input.timestamp_unit`` says otherwise; a line without
one takes the Kafka record's timestamp. A message is decoded whole or not at all.
"""

from __future__ import annotations

import re

from streamae.config import InputConfig
from streamae.formats.base import BadMessage, Point, parse_time
from streamae.formats.tagged import TaggedRows

# split on unescaped separators
_SPACE = re.compile(r"(?<!\\) ")
_COMMA = re.compile(r"(?<!\\),")
_EQ = re.compile(r"(?<!\\)=")
_UNESCAPE = re.compile(r"\\([ ,=\"\\])")


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text)


def _fields(text: str) -> list[str]:
    """Split the field set on commas outside quoted strings."""
    out, start, quoted, i = [], 0, False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise BadMessage("unterminated string field")
    out.append(text[start:])
    return out


def _field_value(text: str) -> object:
    if text.startswith('"'):
        return text  # a string field: not a measurement
    if text in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return text.lower().startswith("t")
    if text[-1:] in ("i", "u"):
        text = text[:-1]
    try:
        return float(text) if any(c in text for c in ".eEnN") else int(text)
    except ValueError:
        raise BadMessage(f"field value {text[:32]!r} is not a number") from None


class InfluxDecoder:
    def __init__(self, config: InputConfig, channels: list[str], default_key: str) -> None:
        self.config, self.rows = config, TaggedRows(config, channels)
        self.unit = "ns" if config.timestamp_unit == "auto" else config.timestamp_unit

    def decode(self, raw: bytes, record_ts: float | None = None) -> list[Point]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadMessage(f"not UTF-8 text: {exc}", "parse") from None
        points: list[Point] = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                points += self._line(line, record_ts)
            except BadMessage as exc:
                raise BadMessage(f"line {n}: {exc}", exc.kind) from None
        return self.rows.require(points)

    def _line(self, line: str, record_ts: float | None) -> list[Point]:
        parts = _SPACE.split(line)
        if len(parts) < 2 or len(parts) > 3:
            # a quoted string field may hold spaces: rejoin the middle
            head, *rest = parts
            if len(rest) < 1:
                raise BadMessage("expected 'measurement[,tags] fields [timestamp]'", "parse")
            stamp = rest[-1] if len(rest) > 1 and rest[-1].lstrip("-").isdigit() else None
            parts = [head, " ".join(rest[:-1] if stamp else rest)] + ([stamp] if stamp else [])
        series, field_text = parts[0], parts[1]
        measurement, *tag_parts = _COMMA.split(series)
        tags = {}
        for tag in tag_parts:
            kv = _EQ.split(tag, 1)
            if len(kv) != 2 or not kv[0] or not kv[1]:
                raise BadMessage(f"bad tag {tag[:32]!r}", "parse")
            tags[_unescape(kv[0])] = _unescape(kv[1])
        fields = {}
        for item in _fields(field_text):
            kv = _EQ.split(item, 1)
            if len(kv) != 2 or not kv[0] or not kv[1]:
                raise BadMessage(f"bad field {item[:32]!r}", "parse")
            fields[_unescape(kv[0])] = _field_value(kv[1])
        if len(parts) == 3:
            ts = parse_time(int(parts[2]) if parts[2].lstrip("-").isdigit() else parts[2],
                            self.unit)
        elif record_ts is not None:
            ts = record_ts
        else:
            raise BadMessage("line has no timestamp", "missing_field")
        return self.rows.points(_unescape(measurement), tags, fields, ts)
