"""Model announcements: a compacted topic that tells every daemon which model is live.

A record's key is ``live``; its value (schema ``streamae.model-announcement/1``)::

    {"schema": ..., "version": "lstm-1a2b3c4d5e", "path": "/models/store/versions/...",
     "files": {"meta.json": "<sha256>", "model.safetensors": "<sha256>",
               "calibration.safetensors": "<sha256>"},
     "announced_at": "2026-11-23T01:00:00Z"}

``path`` is where every daemon can read the model (a shared volume). Publishers:
``streamae models promote|rollback --announce``. Followers: daemons with
``daemon.models_topic`` set read the newest record at start and every new one after; a
model whose files do not match the announced checksums is refused and the daemon keeps
the model it has.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamae.config import KafkaConfig
from streamae.daemon import signing
from streamae.daemon.clients import client_settings, ensure_topics
from streamae.errors import ModelError
from streamae.models.detector import FILES as MODEL_FILES
from streamae.models.detector import Detector, file_sha256

log = logging.getLogger(__name__)
SCHEMA = "streamae.model-announcement/1"
FILES = ("meta.json", *MODEL_FILES)
KEY = b"live"


def announcement(model_dir: str | Path) -> dict[str, Any]:
    """The announcement of the model in ``model_dir`` (its files' checksums as they are)."""
    path = Path(model_dir).resolve()
    version = Detector.load(path).version  # only a model that loads is announced
    return {"schema": SCHEMA, "version": version, "path": str(path),
            "files": {name: file_sha256(path / name) for name in FILES},
            "announced_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def publish(kafka: KafkaConfig, topic: str, doc: dict[str, Any],
            key: bytes | None = None) -> None:
    """Write ``doc`` (signed with ``key`` when given, see :mod:`streamae.daemon.signing`)
    to the (compacted) announcement topic and wait for the brokers."""
    ensure_topics(kafka, [topic], compacted=True)
    producer = KafkaProducer(**client_settings(kafka), acks="all")
    try:
        producer.send(topic, key=KEY, value=json.dumps(signing.sign(doc, key)).encode()).get(
            timeout=30)
    finally:
        producer.close()


def verified(doc: dict[str, Any]) -> Detector:
    """Load an announced model after checking every file against its announced checksum."""
    if doc.get("schema") != SCHEMA or not isinstance(doc.get("files"), dict):
        raise ModelError(f"not a {SCHEMA} record")
    path = Path(doc["path"])
    for name in FILES:
        want = doc["files"].get(name)
        if not (path / name).is_file():
            raise ModelError(f"{path / name} is missing")
        if file_sha256(path / name) != want:
            raise ModelError(f"{path / name} does not match the announced checksum "
                             "(changed or tampered with since it was announced)")
    detector = Detector.load(path)
    if detector.version != doc.get("version"):
        raise ModelError(f"{path} holds version {detector.version}, announced as "
                         f"{doc.get('version')}")
    return detector


class Follower:
    """Reads the announcement topic: its newest record first, then every new one."""

    def __init__(self, kafka: KafkaConfig, topic: str) -> None:
        ensure_topics(kafka, [topic], compacted=True)
        self.consumer = KafkaConsumer(**client_settings(kafka), group_id=None,
                                      enable_auto_commit=False)
        tp = TopicPartition(topic, 0)
        self.consumer.assign([tp])
        self.end = self.consumer.end_offsets([tp])[tp]
        self.consumer.seek(tp, max(0, self.end - 1))

    def current(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The newest announcement, waiting up to ``timeout`` s for it (nothing when none
        was ever made): a daemon starts on it, so the state it checkpointed under that
        model resumes with its thresholds."""
        deadline = time.monotonic() + timeout
        while self.end > 0 and time.monotonic() < deadline:
            got = self.poll(timeout_ms=200)
            if got:
                return got
        return []

    def poll(self, timeout_ms: int = 0) -> list[dict[str, Any]]:
        """New announcements (malformed records are logged and skipped)."""
        out = []
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            for rec in records:
                try:
                    doc = json.loads(rec.value)
                except (ValueError, TypeError):
                    doc = None
                if isinstance(doc, dict):
                    out.append(doc)
                else:
                    log.error("ignoring a malformed model announcement at offset %d (not a "
                              "JSON object)", rec.offset)
        return out

    def close(self) -> None:
        self.consumer.close()
