"""Generic JSON: one object (or an array of objects) per message.

Default layout ``{"timestamp": ISO 8601 or epoch, "key": "sensor-1", "value": 1.5}``, or
``"values": {"channel": number, ...}`` for multichannel rows. Field names come from the
``input`` config; other fields are ignored.
"""

from __future__ import annotations

import math
from typing import Any

from streamae.config import InputConfig
from streamae.formats.base import BadMessage, Point, join_key, load_json, parse_number, parse_time


class JsonDecoder:
    def __init__(self, config: InputConfig, channels: list[str], default_key: str) -> None:
        self.config, self.channels, self.default_key = config, channels, default_key
        self.key_fields = config.key_fields if config.key_fields is not None else ["key"]
        self.index = {c: i for i, c in enumerate(channels)}

    def decode(self, raw: bytes, record_ts: float | None = None) -> list[Point]:
        doc = load_json(raw)
        items = doc if isinstance(doc, list) else [doc]
        return [self._row(item, n) for n, item in enumerate(items)]

    def _row(self, item: Any, n: int) -> Point:
        c = self.config
        if not isinstance(item, dict):
            raise BadMessage(f"item {n}: expected a JSON object, got {type(item).__name__}")
        if c.timestamp_field not in item:
            raise BadMessage(f"item {n}: missing field '{c.timestamp_field}'", "missing_field")
        ts = parse_time(item[c.timestamp_field], c.timestamp_unit, c.timestamp_field)
        parts = []
        for name in self.key_fields:
            value = item.get(name)
            if value is None or isinstance(value, (dict, list)) or value == "":
                raise BadMessage(f"item {n}: key field '{name}' missing or not a scalar",
                                 "missing_field")
            parts.append((name, str(value)))
        key = join_key(parts) if parts else self.default_key
        values = [math.nan] * len(self.channels)
        if c.values_field in item:
            given = item[c.values_field]
            if not isinstance(given, dict):
                raise BadMessage(f"item {n}: field '{c.values_field}' must be an object of "
                                 "channel: number")
            known = 0
            for name, value in given.items():
                i = self.index.get(name)
                if i is not None:
                    values[i] = parse_number(value, f"{c.values_field}.{name}", c.max_abs_value)
                    known += 1
            if not known:
                raise BadMessage(f"item {n}: none of the model's channels {self.channels} in "
                                 f"'{c.values_field}'", "missing_field")
        elif c.value_field in item:
            if len(self.channels) != 1:
                raise BadMessage(f"item {n}: a single '{c.value_field}' for a model with "
                                 f"{len(self.channels)} channels; send '{c.values_field}'")
            values[0] = parse_number(item[c.value_field], c.value_field, c.max_abs_value)
        else:
            raise BadMessage(f"item {n}: missing field '{c.value_field}' or "
                             f"'{c.values_field}'", "missing_field")
        return Point(ts, key, values)
