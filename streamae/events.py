"""Anomaly events (schema ``streamae.event`` v1, see ``schemas/event-v1.json``)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from streamae.clock import iso

SCHEMA = "streamae.event/1"
#: decisions on an open alarm: taken for a recalibrated sensor (the key re-scaled), an
#: operator's word that it is a new normal or an incident
NOTES = ("rescaled", "admitted", "rejected")


def severity(score: float, threshold: float) -> str:
    """Coarse severity from how far the peak score is above the threshold."""
    ratio = score / threshold if threshold > 0 else float("inf")
    return "critical" if ratio >= 5 else "major" if ratio >= 2 else "minor"


def _digest(*parts: Any) -> str:
    text = "|".join(map(str, parts))  # decoders reject lone surrogates; never crash on one
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


class EventBuilder:
    """Tracks each key's open alarm (start, peak, attribution) and writes its events."""

    def __init__(self, channels: list[str], top: int) -> None:
        self.channels, self.top = channels, top
        self.open: dict[str, dict[str, Any]] = {}

    def peak(self, key: str, score: float, threshold: float, channel_error: np.ndarray) -> None:
        """Record a new peak of the key's open alarm (opening the record if needed)."""
        rec = self.open.setdefault(key, {"updates": 0})
        total = float(channel_error.sum())
        shares = channel_error / total if total > 0 else np.zeros_like(channel_error)
        order = np.argsort(-shares, kind="stable")[: self.top]
        rec.update(score=float(score), threshold=float(threshold),
                   top=[{"channel": self.channels[i], "share": round(float(shares[i]), 4)}
                        for i in order])

    def event(self, key: str, status: str, at: float, event_ts: float, model_version: str,
              emitted_at: float, where: dict[str, Any] | None = None) -> dict[str, Any]:
        """Build an open / update / resolved event for the key's alarm, or one of the
        decisions on it (:data:`NOTES`; one per alarm and decision). ``where`` locates the
        triggering point in the input (topic, partition, offset) when the caller knows it."""
        rec = self.open[key]
        if status == "open":
            rec["start"] = event_ts
            rec["first"] = where
        elif status == "update":
            rec["updates"] += 1
        start = rec["start"]
        alarm_id = _digest(key, start)
        seq = rec["updates"] if status == "update" else status
        event = {
            "schema": SCHEMA,
            "event_id": _digest(alarm_id, status, seq),
            "alarm_id": alarm_id,
            "key": key,
            "status": status,
            "start": iso(start),
            "end": iso(event_ts) if status == "resolved" else None,
            "at": iso(at),
            "score": round(rec["score"], 6),
            "threshold": round(rec["threshold"], 6),
            "severity": severity(rec["score"], rec["threshold"]),
            "top_channels": rec["top"],
            "model_version": model_version,
            "emitted_at": iso(emitted_at),
            "source": _source(rec.get("first"), where),
        }
        if status == "resolved":
            del self.open[key]
        return event


def _source(first: dict[str, Any] | None, last: dict[str, Any] | None) -> dict[str, Any] | None:
    """Input span of an alarm: the point that opened it to the one behind this event."""
    if last is None:
        return None
    source = {"topic": last["topic"], "partition": last["partition"],
              "offset_first": None, "offset_last": last["offset"]}
    if first and first["topic"] == last["topic"] and first["partition"] == last["partition"]:
        source["offset_first"] = first["offset"]
    return source
