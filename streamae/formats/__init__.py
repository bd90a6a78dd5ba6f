"""Input formats: bytes of one Kafka message -> points (pure parsers, one per module)."""

from __future__ import annotations

from typing import Any, Protocol

from streamae.config import InputConfig
from streamae.formats.alerts import AlertRateDecoder
from streamae.formats.base import BadMessage, Point
from streamae.formats.influx import InfluxDecoder
from streamae.formats.json_rows import JsonDecoder
from streamae.formats.prometheus import PrometheusDecoder
from streamae.formats.telegraf import TelegrafDecoder

__all__ = ["FORMATS", "BadMessage", "Decoder", "Point", "build_decoder"]


class Decoder(Protocol):
    def decode(self, raw: bytes, record_ts: float | None = None) -> list[Point]: ...


FORMATS: dict[str, Any] = {
    "json": JsonDecoder,
    "telegraf": TelegrafDecoder,
    "influx": InfluxDecoder,
    "prometheus": PrometheusDecoder,
    "alertmanager": AlertRateDecoder,
}


def build_decoder(config: InputConfig, channels: list[str], default_key: str) -> Decoder:
    """The decoder ``config.format`` names, for a model with ``channels``."""
    return FORMATS[config.format](config, channels, default_key)
