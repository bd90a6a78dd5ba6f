"""Samples written by Prometheus-to-Kafka remote-write adapters.

One sample per message, as prometheus-kafka-adapter writes it::

    {"timestamp": "2026-01-01T00:00:00Z", "value": "0.5", "name": "up",
     "labels": {"__name__": "up", "instance": "host-1:9100", "job": "node"}}

or an array of them, or ``{"labels": {...}, "samples": [{"timestamp": ms, "value": v}]}``.
Values may be text (``"NaN"``, ``"+Inf"`` included). The metric name is the measurement,
the labels other than ``__name__`` are the tags (see :mod:`streamae.formats.tagged`).
"""

from __future__ import annotations

from typing import Any

from streamae.config import InputConfig
from streamae.formats.base import BadMessage, Point, load_json, parse_time
from streamae.formats.tagged import TaggedRows


class PrometheusDecoder:
    def __init__(self, config: InputConfig, channels: list[str], default_key: str) -> None:
        self.config, self.rows = config, TaggedRows(config, channels)

    def decode(self, raw: bytes, record_ts: float | None = None) -> list[Point]:
        doc = load_json(raw)
        points: list[Point] = []
        for n, item in enumerate(doc if isinstance(doc, list) else [doc]):
            points += self._item(item, n)
        return self.rows.require(points, "sample")

    def _item(self, item: Any, n: int) -> list[Point]:
        if not isinstance(item, dict):
            raise BadMessage(f"sample {n}: expected an object")
        labels = item.get("labels")
        if not isinstance(labels, dict):
            raise BadMessage(f"sample {n}: missing 'labels' object", "missing_field")
        name = item.get("name") or labels.get("__name__")
        if not name:
            raise BadMessage(f"sample {n}: no metric name ('name' or labels.__name__)",
                             "missing_field")
        tags = {str(k): str(v) for k, v in labels.items() if k != "__name__"}
        samples = item["samples"] if "samples" in item else [item]
        if not isinstance(samples, list):
            raise BadMessage(f"sample {n}: 'samples' must be a list")
        points: list[Point] = []
        for s in samples:
            if not isinstance(s, dict) or "timestamp" not in s or "value" not in s:
                raise BadMessage(f"sample {n}: needs 'timestamp' and 'value'", "missing_field")
            ts = parse_time(s["timestamp"], self.config.timestamp_unit)
            points += self.rows.points(str(name), tags, {str(name): s["value"]}, ts, text_ok=True)
        return points
