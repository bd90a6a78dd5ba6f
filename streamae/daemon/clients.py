"""kafka-python clients built from config: manual commits in, ``acks=all`` and idempotence
out, TLS/SASL settings passed through, secrets never logged."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import TopicAlreadyExistsError

from streamae.config import DaemonConfig, KafkaConfig
from streamae.errors import ConfigError

log = logging.getLogger(__name__)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET = re.compile(r"password|secret|token|credential", re.I)


def _expand(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise ConfigError(f"config field 'kafka.client.{name}': environment variable "
                              f"{var} is not set")
        return os.environ[var]

    return _VAR.sub(lookup, value)


def client_settings(config: KafkaConfig) -> dict[str, Any]:
    """Settings every client gets: servers, id, security, and the pass-through block."""
    settings = {"bootstrap_servers": config.bootstrap_servers.split(","),
                "client_id": config.client_id, "security_protocol": config.security_protocol}
    settings.update({k: _expand(k, v) for k, v in config.client.items()})
    return settings


def masked(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to log: secret-looking values replaced."""
    return {k: "***" if _SECRET.search(k) and v is not None else v for k, v in settings.items()}


def consumer(config: KafkaConfig, daemon: DaemonConfig, exactly_once: bool,
             **overrides: Any) -> KafkaConsumer:
    settings = {**client_settings(config), "group_id": daemon.group_id,
                "enable_auto_commit": False, "auto_offset_reset": daemon.auto_offset_reset,
                "max_poll_records": daemon.poll_records,
                "isolation_level": "read_committed" if exactly_once else "read_uncommitted",
                "fetch_max_wait_ms": 100, **overrides}
    log.debug("consumer settings %s", masked(settings))
    return KafkaConsumer(**settings)


def producer(config: KafkaConfig, transactional_id: str | None = None,
             **overrides: Any) -> KafkaProducer:
    settings = {**client_settings(config), "acks": "all", "enable_idempotence": True,
                "linger_ms": 5, "batch_size": 65536, "max_request_size": 1 << 20,
                "transactional_id": transactional_id, **overrides}
    log.debug("producer settings %s", masked(settings))
    return KafkaProducer(**settings)


def ensure_topics(config: KafkaConfig, names: list[str], partitions: int = 1,
                  compacted: bool = False) -> None:
    """Create missing topics (no-op for existing ones)."""
    admin = KafkaAdminClient(**client_settings(config))
    try:
        existing = set(admin.list_topics())
        options = {"num_partitions": partitions,
                   "configs": {"cleanup.policy": "compact"} if compacted else {}}
        new = {n: options for n in names if n not in existing}
        if new:
            try:
                admin.create_topics(new, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
