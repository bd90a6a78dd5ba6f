"""Telegraf's JSON output: ``{"name", "tags", "fields", "timestamp"}`` or a batch
``{"metrics": [...]}`` (``json_timestamp_units`` decides the epoch unit; auto by default)."""

from __future__ import annotations

from typing import Any

from streamae.config import InputConfig
from streamae.formats.base import BadMessage, Point, load_json, parse_time
from streamae.formats.tagged import TaggedRows


class TelegrafDecoder:
    def __init__(self, config: InputConfig, channels: list[str], default_key: str) -> None:
        self.config, self.rows = config, TaggedRows(config, channels)

    def decode(self, raw: bytes, record_ts: float | None = None) -> list[Point]:
        doc = load_json(raw)
        metrics = doc.get("metrics") if isinstance(doc, dict) and "metrics" in doc else [doc]
        if not isinstance(metrics, list):
            raise BadMessage("'metrics' must be a list")
        points: list[Point] = []
        for n, metric in enumerate(metrics):
            points += self._metric(metric, n)
        return self.rows.require(points)

    def _metric(self, m: Any, n: int) -> list[Point]:
        if not isinstance(m, dict):
            raise BadMessage(f"metric {n}: expected an object")
        for name in ("name", "fields", "timestamp"):
            if name not in m:
                raise BadMessage(f"metric {n}: missing '{name}'", "missing_field")
        tags, fields = m.get("tags") or {}, m["fields"]
        if not isinstance(tags, dict) or not isinstance(fields, dict):
            raise BadMessage(f"metric {n}: 'tags' and 'fields' must be objects")
        ts = parse_time(m["timestamp"], self.config.timestamp_unit)
        return self.rows.points(str(m["name"]), {k: str(v) for k, v in tags.items()}, fields, ts)
