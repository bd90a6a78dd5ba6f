"""Rows from tagged measurements (Telegraf, Influx line protocol, Prometheus samples).

A measurement with tags and numeric fields becomes:

* for a multichannel model, one row keyed by the tag set, fields matched to channels by
  name (``measurement.field`` first, then ``field``);
* for a univariate model, one row per field, keyed by the series
  (``measurement,tag=v,.../field``), so every field is its own sensor.

``input.key_fields`` picks which tags form the key (default: the measurement and all tags).
"""

from __future__ import annotations

import math

from streamae.config import InputConfig
from streamae.formats.base import BadMessage, Point, parse_number


class TaggedRows:
    def __init__(self, config: InputConfig, channels: list[str]) -> None:
        self.config, self.channels = config, channels
        self.index = {c: i for i, c in enumerate(channels)}

    def require(self, points: list[Point], what: str = "numeric field") -> list[Point]:
        """A message must yield at least one point for the model."""
        if not points:
            raise BadMessage(f"no {what} matches the model's channels {self.channels}",
                             "missing_field")
        return points

    def key(self, measurement: str, tags: dict[str, str]) -> str:
        if self.config.key_fields is None:
            return ",".join([measurement, *(f"{k}={tags[k]}" for k in sorted(tags))])
        parts = []
        for name in self.config.key_fields:
            if name not in tags:
                raise BadMessage(f"tag '{name}' (input.key_fields) missing from {measurement}",
                                 "missing_field")
            parts.append(f"{name}={tags[name]}")
        return ",".join(parts)

    def points(self, measurement: str, tags: dict[str, str], fields: dict[str, object],
               ts: float, text_ok: bool = False) -> list[Point]:
        numeric = {name: v for name, v in fields.items()
                   if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        if not text_ok:  # string fields are labels, not measurements
            numeric = {n: v for n, v in numeric.items() if not isinstance(v, str)}
        key = self.key(measurement, tags)
        limit = self.config.max_abs_value
        if len(self.channels) == 1:
            return [Point(ts, f"{key}/{name}", [parse_number(v, name, limit, text_ok)])
                    for name, v in numeric.items()]
        values = [math.nan] * len(self.channels)
        known = 0
        for name, v in numeric.items():
            i = self.index.get(f"{measurement}.{name}", self.index.get(name))
            if i is not None:
                values[i] = parse_number(v, name, limit, text_ok)
                known += 1
        return [Point(ts, key, values)] if known else []
