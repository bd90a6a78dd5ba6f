"""kafka-python clients built from config: manual commits in, ``acks=all`` and idempotence
out, TLS/SASL settings passed through, secrets never logged."""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streamae.config import DaemonConfig, KafkaConfig, masked
from streamae.errors import ConfigError, KafkaAccessError

log = logging.getLogger(__name__)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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


class _Causes(logging.Handler):
    """Collects why kafka-python's bootstrap connections failed (it logs, then retries)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


def check_access(config: KafkaConfig, timeout: float = 15.0) -> None:
    """Connect once with the configured security settings. A certificate this client does
    not trust, and a SASL login the brokers refuse, raise :class:`KafkaAccessError` naming
    the setting to fix (the clients would otherwise retry them forever); brokers that are
    merely unreachable are logged, and the clients keep retrying."""
    settings = client_settings(config)
    where = config.bootstrap_servers
    host, port = _first_server(settings)
    if config.security_protocol in ("SSL", "SASL_SSL"):
        untrusted = _untrusted_certificate(settings, host, port)
        if untrusted:
            raise KafkaAccessError(
                f"the TLS certificate of Kafka at {where} is not trusted ({untrusted}): set "
                "kafka.client.ssl_cafile to the CA that signed the brokers' certificates")
    causes = _Causes()
    net = logging.getLogger("kafka.net")
    level = net.level
    net.addHandler(causes)
    net.setLevel(min(net.getEffectiveLevel(), logging.WARNING))
    try:
        KafkaAdminClient(**settings, bootstrap_timeout_ms=int(timeout * 1000)).close()
        return
    except KafkaError as exc:
        last = next((m.split("failed: ", 1)[1] for m in reversed(causes.seen)
                     if "connection to" in m and "failed: " in m), str(exc))
    finally:
        net.removeHandler(causes)
        net.setLevel(level)
    if config.security_protocol.startswith("SASL") and _reachable(host, port):
        # the brokers answer and (with SSL) TLS is fine, yet no session: the login failed
        mechanism = settings.get("sasl_mechanism", "PLAIN")
        raise KafkaAccessError(
            f"Kafka at {where} refused the SASL login of user "
            f"{settings.get('sasl_plain_username')!r} ({mechanism}; last error: {last}): "
            "check kafka.client.sasl_plain_username and sasl_plain_password, and that the "
            f"brokers enable {mechanism}")
    log.warning("Kafka at %s is not reachable yet (%s); the clients keep retrying", where, last)


def _first_server(settings: dict[str, Any]) -> tuple[str, int]:
    host, _, port = settings["bootstrap_servers"][0].strip().rpartition(":")
    return host.strip("[]"), int(port or 9092)


def reachable(config: KafkaConfig) -> bool:
    """True when any bootstrap server accepts a TCP connection."""
    for server in config.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if _reachable(host.strip("[]"), int(port or 9092), timeout=2.0):
            return True
    return False


def _reachable(host: str, port: int, timeout: float = 5.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _untrusted_certificate(settings: dict[str, Any], host: str, port: int) -> str | None:
    """Why this client rejects the broker's certificate, or None (trusted, or no answer:
    not a certificate problem)."""
    context = ssl.create_default_context(cafile=settings.get("ssl_cafile"))
    if settings.get("ssl_check_hostname", True) is False:
        context.check_hostname = False
    if settings.get("ssl_certfile"):
        context.load_cert_chain(settings["ssl_certfile"], settings.get("ssl_keyfile"),
                                settings.get("ssl_password"))
    try:
        with socket.create_connection((host, port), timeout=5) as sock, \
                context.wrap_socket(sock, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message or str(exc)
    except (OSError, ssl.SSLError):
        return None


def consumer(config: KafkaConfig, daemon: DaemonConfig, exactly_once: bool,
             **overrides: Any) -> KafkaConsumer:
    settings = {**client_settings(config), "group_id": daemon.group_id,
                "enable_auto_commit": False, "auto_offset_reset": daemon.auto_offset_reset,
                "max_poll_records": daemon.poll_records,
                "isolation_level": "read_committed" if exactly_once else "read_uncommitted",
                "fetch_max_wait_ms": 100,
                "session_timeout_ms": int(daemon.session_timeout * 1000),
                "heartbeat_interval_ms": int(min(3.0, daemon.session_timeout / 3) * 1000),
                "partition_assignment_strategy": (
                    (CooperativeStickyAssignor,) if daemon.rebalance == "cooperative"
                    else (RangePartitionAssignor,)),
                **overrides}
    log.debug("consumer settings %s", masked(settings))
    return KafkaConsumer(**settings)


def resume_stalled_join(consumer: KafkaConsumer) -> bool:
    """Restart a group join whose result the client dropped; True when one was restarted.

    kafka-python 3.0 leaves its coordinator REBALANCING for good when a join outlives one
    ``poll`` and the metadata change that started it is gone by the next: the finished
    join is never taken up, and every commit fails with RebalanceInProgressError. Seen as
    a rebalance in progress with no join in flight and none wanted; asking for a rejoin
    lets the next ``poll`` join afresh. Reads client internals, defensively: where they
    differ (another client version) it does nothing.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    try:
        join = coordinator._join_task
        stalled = (coordinator.rebalance_in_progress() and not coordinator.need_rejoin()
                   and (join is None or join.is_done))
    except AttributeError:
        return False
    if stalled:
        log.warning("the group join stalled (a finished join was never taken up); "
                    "joining again")
        coordinator.request_rejoin()
    return stalled


def producer(config: KafkaConfig, transactional_id: str | None = None,
             **overrides: Any) -> KafkaProducer:
    settings = {**client_settings(config), "acks": "all", "enable_idempotence": True,
                "linger_ms": 5, "batch_size": 65536, "max_request_size": 1 << 20,
                "transactional_id": transactional_id, **overrides}
    log.debug("producer settings %s", masked(settings))
    return KafkaProducer(**settings)


def ensure_topics(config: KafkaConfig, names: list[str], partitions: int = 1,
                  compacted: bool = False, configs: dict[str, str] | None = None) -> None:
    """Create missing topics (no-op for existing ones)."""
    admin = KafkaAdminClient(**client_settings(config))
    try:
        existing = set(admin.list_topics())
        options = {"num_partitions": partitions,
                   "configs": {**({"cleanup.policy": "compact"} if compacted else {}),
                               **(configs or {})}}
        new = {n: options for n in names if n not in existing}
        if new:
            try:
                admin.create_topics(new, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
