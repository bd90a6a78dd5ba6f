"""Config sections of the running service: scoring, Kafka, input and the daemon (the
online updater's are in :mod:`streamae.config.updater`)."""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from streamae.config.fields import (Bool, Duration, Float, Int, Plain, Text, _opt, _opt_dict,
                                    section)


@section
class ScoringConfig:
    """Inference settings."""

    batch_size: Int = _opt(256, "windows per model call across keys (fewer, larger calls "
                           "score faster on CPU)", min=1)
    threads: Int = _opt(1, "torch CPU threads: at or below the cores left free by the Kafka "
                        "client and anything else on the machine", min=1)
    top_channels: Int = _opt(3, "channels named in each event", min=1)


@section
class KafkaConfig:
    """The Kafka cluster, shared by the daemon's consumer and producer."""

    bootstrap_servers: Text = _opt("127.0.0.1:9092", "host:port[,host:port...] of the brokers")
    client_id: Text = _opt("streamae", "client id the brokers see (logs, quotas)")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = _opt(
        "PLAINTEXT", "transport security")
    client: dict[str, Plain] = _opt_dict(
        "more kafka-python settings for both clients, passed through as given: TLS (ssl_cafile, "
        "ssl_certfile, ssl_keyfile, ssl_password), SASL (sasl_mechanism, sasl_plain_username, "
        "sasl_plain_password), timeouts. '${VAR}' reads an environment variable")


@section
class InputConfig:
    """Topics the daemon consumes and how their messages become points."""

    topics: list[str] = field(default_factory=lambda: ["streamae.metrics"],
                              metadata={"description": "topics to consume"})
    format: Literal["json", "telegraf", "influx", "prometheus", "alertmanager"] = _opt(
        "json", "message layout (see README: input formats)")
    key_fields: list[str] | None = _opt(
        None, "fields/tags/labels forming the key; default json: [key], telegraf/influx/"
        "prometheus: measurement and all tags, alertmanager: [alertname]")
    timestamp_field: Text = _opt("timestamp", "json: field holding the event time")
    value_field: Text = _opt("value", "json: field holding a univariate value")
    values_field: Text = _opt("values", "json: field holding {channel: value}")
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = _opt(
        "auto", "unit of numeric timestamps (auto: by magnitude; influx: ns)")
    alert_interval: Duration = _opt(60.0, "alertmanager: tumbling interval of the alert-rate "
                                    "series", min=1.0)
    max_message_bytes: Int = _opt(262_144, "larger messages go to the dead-letter topic", min=64)
    max_abs_value: Float = _opt(1e15, "larger absolute values (and infinities) are rejected "
                                "as corrupt", min=1.0)
    max_future: Duration | None = _opt(
        3600.0, "points stamped more than this ahead of the wall clock go to the dead-letter "
        "topic (kind future) instead of holding their key back; null: no bound", min=0.0)


@section
class DaemonConfig:
    """The long-running scorer: where events go, delivery guarantee, state, HTTP."""

    model: Text | None = _opt(None, "model directory (streamae train --out); required for run")
    group_id: Text = _opt("streamae", "consumer group; daemons in one group share partitions")
    instance_id: Text | None = _opt(
        None, "this daemon's stable identity in the group (static membership, transactional "
        "id); default: derived from group_id and state_dir")
    output_topic: Text = _opt("streamae.events", "anomaly events (schema streamae.event/1)")
    dead_letter_topic: Text = _opt("streamae.dead-letter",
                                  "rejected input: raw bytes, reason and source in headers")
    delivery: Literal["at-least-once", "exactly-once"] = _opt(
        "at-least-once", "at-least-once: a crash may repeat the events of the last uncommitted "
        "interval | exactly-once: Kafka transactions, for read_committed consumers")
    commit_every: Duration = _opt(1.0, "commit offsets and checkpoint state this often "
                               "(bounds the repeats after a crash)", min=0.0)
    commit_timeout: Duration = _opt(
        30.0, "longest wait for one commit step (flush, transaction, offsets); one that runs "
        "out is retried from the last durable checkpoint, and a stop waits at most this", min=1.0)
    state_dir: Text = _opt("state", "checkpoints of windows, thresholds, alarms and offsets")
    poll_records: Int = _opt(2000, "most records handled per poll", min=1)
    poll_timeout: Duration = _opt(0.1, "longest wait for records in one poll",
                               min=0.0)
    auto_offset_reset: Literal["earliest", "latest"] = _opt(
        "earliest", "where a new consumer group starts reading")
    control_topic: Text = _opt("streamae.control", "commands for running daemons: "
                              '{"command": "update"} or {"command": "admit", "key": K}')
    state_topic: Text | None = _opt(
        "streamae.state", "compacted topic holding each input partition's key state, so a "
        "daemon that receives a partition in a rebalance carries its keys on without "
        "warming up; null: off (a single daemon needs only state_dir)")
    rebalance: Literal["cooperative", "eager"] = _opt(
        "cooperative", "cooperative: only partitions that move pause | eager: every "
        "rebalance revokes and reassigns all")
    session_timeout: Duration = _opt(45.0, "a daemon silent this long (crashed, cut off) loses "
                                  "its partitions to the rest of the group",
                                  min=6.0, max=1800.0)
    models_topic: Text | None = _opt(None, "follow model announcements on this compacted "
                                    "topic (streamae models promote --announce) and swap "
                                    "in each verified version; null: off")
    signature_key_env: Text | None = _opt(
        None, "environment variable holding the fleet's shared key: model announcements and "
        "control messages must carry its HMAC-SHA256 signature (refused and counted "
        "otherwise); publishers sign with it; null: off")
    http_host: Text = _opt("127.0.0.1", "address for /metrics, /healthz, /readyz")
    http_port: Int = _opt(9108, "port for /metrics, /healthz, /readyz (0: off)", min=0,
                          max=65535)
