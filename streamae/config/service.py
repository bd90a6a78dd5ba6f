"""Config sections of the running service: scoring, Kafka, input, the daemon and the
online updater."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from streamae.config.fields import _opt, _opt_dict


@dataclass(frozen=True)
class ScoringConfig:
    """Inference settings."""

    batch_size: int = _opt(256, "windows per model call across keys (fewer, larger calls "
                           "score faster on CPU)", min=1)
    threads: int = _opt(1, "torch CPU threads: at or below the cores left free by the Kafka "
                        "client and anything else on the machine", min=1)
    top_channels: int = _opt(3, "channels named in each event", min=1)


@dataclass(frozen=True)
class KafkaConfig:
    """The Kafka cluster, shared by the daemon's consumer and producer."""

    bootstrap_servers: str = _opt("127.0.0.1:9092", "host:port[,host:port...] of the brokers")
    client_id: str = _opt("streamae", "client id the brokers see (logs, quotas)")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = _opt(
        "PLAINTEXT", "transport security")
    client: dict[str, Any] = _opt_dict(
        "more kafka-python settings for both clients, passed through as given: TLS (ssl_cafile, "
        "ssl_certfile, ssl_keyfile, ssl_password), SASL (sasl_mechanism, sasl_plain_username, "
        "sasl_plain_password), timeouts. '${VAR}' reads an environment variable")


@dataclass(frozen=True)
class InputConfig:
    """Topics the daemon consumes and how their messages become points."""

    topics: list[str] = field(default_factory=lambda: ["streamae.metrics"],
                              metadata={"help": "topics to consume"})
    format: Literal["json", "telegraf", "influx", "prometheus", "alertmanager"] = _opt(
        "json", "message layout (see README: input formats)")
    key_fields: list[str] | None = _opt(
        None, "fields/tags/labels forming the key; default json: [key], telegraf/influx/"
        "prometheus: measurement and all tags, alertmanager: [alertname]")
    timestamp_field: str = _opt("timestamp", "json: field holding the event time")
    value_field: str = _opt("value", "json: field holding a univariate value")
    values_field: str = _opt("values", "json: field holding {channel: value}")
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = _opt(
        "auto", "unit of numeric timestamps (auto: by magnitude; influx: ns)")
    alert_interval: float = _opt(60.0, "alertmanager: tumbling interval of the alert-rate series",
                                 duration=True, min=1.0)
    max_message_bytes: int = _opt(262_144, "larger messages go to the dead-letter topic", min=64)
    max_abs_value: float = _opt(1e15, "larger absolute values (and infinities) are rejected "
                                "as corrupt", min=1.0)
    max_future: float | None = _opt(
        3600.0, "points stamped more than this ahead of the wall clock go to the dead-letter "
        "topic (kind future) instead of holding their key back; null: no bound",
        duration=True, min=0.0)


@dataclass(frozen=True)
class DaemonConfig:
    """The long-running scorer: where events go, delivery guarantee, state, HTTP."""

    model: str | None = _opt(None, "model directory (streamae train --out); required for run")
    group_id: str = _opt("streamae", "consumer group; daemons in one group share partitions")
    instance_id: str | None = _opt(
        None, "this daemon's stable identity in the group (static membership, transactional "
        "id); default: derived from group_id and state_dir")
    output_topic: str = _opt("streamae.events", "anomaly events (schema streamae.event/1)")
    dead_letter_topic: str = _opt("streamae.dead-letter",
                                  "rejected input: raw bytes, reason and source in headers")
    delivery: Literal["at-least-once", "exactly-once"] = _opt(
        "at-least-once", "at-least-once: a crash may repeat the events of the last uncommitted "
        "interval | exactly-once: Kafka transactions, for read_committed consumers")
    commit_every: float = _opt(1.0, "commit offsets and checkpoint state this often "
                               "(bounds the repeats after a crash)", duration=True, min=0.0)
    commit_timeout: float = _opt(
        30.0, "longest wait for one commit step (flush, transaction, offsets); one that runs "
        "out is retried from the last durable checkpoint, and a stop waits at most this",
        duration=True, min=1.0)
    state_dir: str = _opt("state", "checkpoints of windows, thresholds, alarms and offsets")
    poll_records: int = _opt(2000, "most records handled per poll", min=1)
    poll_timeout: float = _opt(0.1, "longest wait for records in one poll", duration=True,
                               min=0.0)
    auto_offset_reset: Literal["earliest", "latest"] = _opt(
        "earliest", "where a new consumer group starts reading")
    control_topic: str = _opt("streamae.control", "commands for running daemons: "
                              '{"command": "update"} or {"command": "admit", "key": K}')
    state_topic: str | None = _opt(
        "streamae.state", "compacted topic holding each input partition's key state, so a "
        "daemon that receives a partition in a rebalance carries its keys on without "
        "warming up; null: off (a single daemon needs only state_dir)")
    rebalance: Literal["cooperative", "eager"] = _opt(
        "cooperative", "cooperative: only partitions that move pause | eager: every "
        "rebalance revokes and reassigns all")
    session_timeout: float = _opt(45.0, "a daemon silent this long (crashed, cut off) loses "
                                  "its partitions to the rest of the group", duration=True,
                                  min=6.0, max=1800.0)
    models_topic: str | None = _opt(None, "follow model announcements on this compacted "
                                    "topic (streamae models promote --announce) and swap "
                                    "in each verified version; null: off")
    signature_key_env: str | None = _opt(
        None, "environment variable holding the fleet's shared key: model announcements and "
        "control messages must carry its HMAC-SHA256 signature (refused and counted "
        "otherwise); publishers sign with it; null: off")
    http_host: str = _opt("127.0.0.1", "address for /metrics, /healthz, /readyz")
    http_port: int = _opt(9108, "port for /metrics, /healthz, /readyz (0: off)", min=0,
                          max=65535)


@dataclass(frozen=True)
class UpdaterConfig:
    """Online updates: replay buffer, fine-tuning (transfer-learning settings), gate."""

    enabled: bool = _opt(False, "run the online updater inside `streamae run`")
    store: str | None = _opt(None, "model store directory for accepted versions (the daemon "
                             "starts from its live version when it has one)")
    buffer: Literal["global", "per-key"] = _opt(
        "global", "replay buffer over all keys, or one per key (capacities then per key)")
    recent: int = _opt(20_000, "replay buffer: newest normal windows kept", min=16)
    reservoir: int = _opt(20_000, "replay buffer: uniform sample of older windows (0: none)",
                          min=0)
    quarantine: int = _opt(5_000, "windows from inside alarms held until confirmed normal",
                           min=1)
    epochs: int = _opt(3, "fine-tuning epochs per round", min=1)
    patience: int = _opt(2, "stop a round after this many epochs without a better "
                         "validation loss (the best epoch's weights are kept)", min=1)
    batch_size: int = _opt(256, "windows per fine-tuning step", min=1)
    lr: float = _opt(1e-4, "fine-tuning learning rate (well below the pretraining one)",
                     min=0.0)
    encoder_lr_scale: float = _opt(0.1, "pretrained encoder layers learn this much slower",
                                   min=0.0, max=1.0)
    freeze_encoder: bool = _opt(False, "keep the whole encoder fixed (feature extractor)")
    freeze_layers: int = _opt(0, "keep the first k encoder layers fixed", min=0)
    time_budget: float = _opt(120.0, "longest fine-tuning round", duration=True, min=1.0)
    device: Literal["auto", "cpu", "cuda"] = _opt("auto", "auto: CUDA when present")
    holdout_fraction: float = _opt(0.2, "newest share of the buffer held out for the gate",
                                   min=0.05, max=0.5)
    gate_tolerance: float = _opt(-0.1, "a candidate's held-out loss may exceed the live "
                                 "model's by this share at most; negative: it must beat it "
                                 "by that share (a swap restarts thresholds, which costs "
                                 "false alarms: marginal gains are not worth one)",
                                 min=-0.99)
    gate_alarm_rate: float = _opt(0.002, "largest allowed rise of the alarm rate on recent "
                                  "normal windows (shadow scoring)", min=0.0)
    gate_incident_keep: float = _opt(0.5, "of the alarm windows standing out from recent "
                                     "normal under the live model, this share must still "
                                     "under the candidate (0: no check)", min=0.0, max=1.0)
    every_points: int = _opt(0, "trigger: a round every N scored windows (0: off)", min=0)
    every: float = _opt(0.0, "trigger: a round every T of event time (0: off)", duration=True,
                        min=0.0)
    drift: Literal["none", "adwin", "page-hinkley", "kswin"] = _opt(
        "adwin", "trigger: river drift detector on the window-score stream")
    calibration_points: int = _opt(
        1000, "after a swap, each key's threshold is fitted to this many of its recent "
        "scores under the new model (at least threshold.init_points are needed)", min=10)
    min_windows: int = _opt(2_000, "no round before the buffer holds this many windows", min=16)
    cooldown: float = _opt(3600.0, "event time between two rounds, whatever triggers",
                           duration=True, min=0.0)
    rescale_after: float = _opt(3600.0, "a key in alarm this long gets new scaling of its "
                                "moved channels if that makes its windows score as normal "
                                "again (a recalibrated sensor; 0: off)", duration=True,
                                min=0.0)
    admit_after: float = _opt(0.0, "a key in alarm this long is taken as a change of "
                              "normal: its quarantined windows enter the buffer (0, the "
                              "default: only when an operator admits them; a long alarm "
                              "re-scaling does not explain may be an incident)",
                              duration=True, min=0.0)
