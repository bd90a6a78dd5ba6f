"""Typed, validated configuration.

Every section is a frozen dataclass; its defaults *are* the packaged default config.
A YAML file only overrides what it names. Unknown fields, wrong types and values out
of range fail at start-up with the field path, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from streamae.durations import parse_duration
from streamae.errors import ConfigError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _opt(default: Any, help: str, **checks: Any) -> Any:
    """A field with a help text and optional checks (min, max, duration)."""
    return field(default=default, metadata={"help": help, **checks})


def _opt_dict(help: str) -> Any:
    return field(default_factory=dict, metadata={"help": help})


@dataclass(frozen=True)
class DataConfig:
    """Column roles in files and rows."""

    timestamp_column: str = _opt("timestamp", "column holding ISO 8601 text or epoch seconds")
    key_column: str = _opt("key", "column naming the sensor/entity; one key if absent")
    label_column: str = _opt("label", "ground-truth column, used for evaluation only")
    channels: list[str] | None = _opt(None, "channel columns; default: every other numeric column")
    default_key: str = _opt("series", "key used when the input has no key column")


@dataclass(frozen=True)
class WindowConfig:
    """Per-key sliding windows and the policy for imperfect points."""

    size: int = _opt(64, "points per window (W)", min=4, max=4096)
    hop: int = _opt(8, "score a window every h-th point; each window scores its newest h points", min=1)
    nan_policy: Literal["ffill", "drop"] = _opt(
        "ffill", "non-finite values: carry the channel's last finite value forward, or drop the point")
    duplicate_policy: Literal["drop", "keep"] = _opt(
        "drop", "a point with the same timestamp as the key's previous point")
    max_gap: float | None = _opt(None, "a larger jump in time is a gap (duration; none: no gap check)",
                                 duration=True)
    gap_policy: Literal["reset", "ignore"] = _opt(
        "reset", "after a gap: restart the key's window (re-warm) or carry on")


@dataclass(frozen=True)
class LSTMConfig:
    """LSTM sequence autoencoder."""

    kind: Literal["lstm"] = "lstm"
    hidden: int = _opt(64, "LSTM hidden units", min=1)
    latent: int = _opt(16, "bottleneck size (keep it below window x channels)", min=1)
    layers: int = _opt(1, "stacked LSTM layers in encoder and decoder", min=1, max=8)
    dropout: float = _opt(0.0, "dropout between stacked layers", min=0.0, max=0.9)
    variational: bool = _opt(False, "variational bottleneck (mean/log-variance, KL term)")
    beta: float = _opt(0.01, "weight of the KL term when variational", min=0.0)


@dataclass(frozen=True)
class TransformerConfig:
    """Transformer sequence autoencoder."""

    kind: Literal["transformer"] = "transformer"
    d_model: int = _opt(32, "token width", min=4)
    heads: int = _opt(4, "attention heads (must divide d_model)", min=1)
    layers: int = _opt(2, "encoder layers (the decoder has the same number)", min=1, max=12)
    ff: int = _opt(64, "feed-forward width", min=4)
    latent: int = _opt(16, "bottleneck size", min=1)
    dropout: float = _opt(0.0, "dropout in attention and feed-forward", min=0.0, max=0.9)


ModelConfig = LSTMConfig | TransformerConfig
MODEL_CONFIGS: dict[str, type] = {"lstm": LSTMConfig, "transformer": TransformerConfig}


@dataclass(frozen=True)
class TrainConfig:
    """Offline training on history."""

    epochs: int = _opt(30, "maximum epochs", min=1)
    batch_size: int = _opt(256, "windows per step", min=1)
    lr: float = _opt(1e-3, "Adam learning rate", min=0.0)
    weight_decay: float = _opt(0.0, "Adam weight decay", min=0.0)
    val_fraction: float = _opt(0.1, "newest share of windows held out for early stopping",
                               min=0.0, max=0.5)
    patience: int = _opt(3, "epochs without validation gain before stopping", min=1)
    stride: int = _opt(1, "step between training windows", min=1)
    max_windows: int = _opt(50_000, "cap on training windows (evenly subsampled)", min=16)
    noise_std: float = _opt(0.0, "denoising: std of Gaussian input noise (scaled units)", min=0.0)
    mask_ratio: float = _opt(0.0, "denoising: share of time steps zeroed in the input", min=0.0,
                             max=0.9)
    seed: int = _opt(0, "seed for weights, shuffling and noise")
    device: Literal["auto", "cpu", "cuda"] = _opt("auto", "auto: CUDA when present")


@dataclass(frozen=True)
class ThresholdConfig:
    """Streaming per-key threshold on the score."""

    kind: Literal["spot", "quantile"] = _opt("spot", "peaks-over-threshold (SPOT) or streaming quantile")
    risk: float = _opt(1e-3, "spot: probability of a normal score exceeding the threshold",
                       min=1e-9, max=0.5)
    init_points: int = _opt(200, "scores a key needs before it has a threshold", min=10)
    init_quantile: float = _opt(0.98, "spot: quantile that starts the tail", min=0.5, max=0.9999)
    quantile: float = _opt(0.995, "quantile: which quantile is the threshold", min=0.5, max=0.99999)
    margin: float = _opt(1.0, "quantile: threshold = margin x quantile", min=0.1)


@dataclass(frozen=True)
class AlarmConfig:
    """Hysteresis turning threshold crossings into few, meaningful alarms."""

    enter_level: float = _opt(1.0, "open when score >= enter_level x threshold", min=0.01)
    exit_level: float = _opt(0.8, "calm when score < exit_level x threshold", min=0.0)
    min_duration: float = _opt(0.0, "score must stay above enter level this long to open",
                               duration=True)
    resolve_after: float = _opt(600.0, "calm this long before an alarm resolves", duration=True)
    suppress: float = _opt(0.0, "after a resolve, no new alarm on the key for this long",
                           duration=True)
    update_every: float = _opt(300.0, "at most one update event per alarm this often",
                               duration=True)


@dataclass(frozen=True)
class ScoringConfig:
    """Inference settings."""

    batch_size: int = _opt(64, "windows per model call across keys", min=1)
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
    max_abs_value: float = _opt(1e15, "larger absolute values are rejected as corrupt", min=1.0)


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
    admit_after: float = _opt(21600.0, "a key in alarm this long is taken as a change of "
                              "normal: its quarantined windows enter the buffer (0: only "
                              "when an operator admits them)", duration=True, min=0.0)


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: LSTMConfig | TransformerConfig = field(default_factory=LSTMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    alarm: AlarmConfig = field(default_factory=AlarmConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    input: InputConfig = field(default_factory=InputConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    updater: UpdaterConfig = field(default_factory=UpdaterConfig)

    def __post_init__(self) -> None:
        if not self.input.topics:
            raise ConfigError("config field 'input.topics': empty; name at least one topic")
        if self.window.hop > self.window.size:
            raise ConfigError(
                f"config field 'window.hop': got {self.window.hop}; must be <= window.size "
                f"({self.window.size}) so that every point lands in a scored window")
        if self.alarm.exit_level > self.alarm.enter_level:
            raise ConfigError(
                f"config field 'alarm.exit_level': got {self.alarm.exit_level}; must be <= "
                f"alarm.enter_level ({self.alarm.enter_level}) so that alarms can close")
        if isinstance(self.model, TransformerConfig) and self.model.d_model % self.model.heads:
            raise ConfigError(
                f"config field 'model.heads': got {self.model.heads}; must divide model.d_model "
                f"({self.model.d_model})")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a YAML config (``None``: packaged defaults) and apply dotted ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, got "
                              f"{type(loaded).__name__}")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from plain data."""
    return _build(Config, data, "")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-ready data for a config dataclass."""
    return dataclasses.asdict(config)


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix or 'top level'}' must be a mapping, "
                          f"got {data!r}")
    if cls is Config and isinstance(data.get("model"), dict):
        kind = data["model"].get("kind", "lstm")
        if kind not in MODEL_CONFIGS:
            raise ConfigError(f"config field 'model.kind': got {kind!r}; allowed: "
                              f"{', '.join(MODEL_CONFIGS)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"'{prefix}'" if prefix else "the top level"
        raise ConfigError(f"unknown config field(s) {', '.join(repr(u) for u in unknown)} in {where}; "
                          f"allowed: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if name == "model" and cls is Config:
            hint = MODEL_CONFIGS[value.get("kind", "lstm")] if isinstance(value, dict) else hint
        kwargs[name] = _coerce(hint, value, path, fields[name].metadata)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"config section '{prefix}': {exc}") from None


def _coerce(hint: Any, value: Any, path: str, meta: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path, meta)
    if meta.get("duration"):
        try:
            value = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"config field '{path}': got {value!r}; {exc}") from None
        return _check_range(value, path, meta)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"config field '{path}': got {value!r}; allowed: "
                              f"{', '.join(map(str, allowed))}")
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"config field '{path}': got {value!r}; must be a mapping")
        bad = [k for k, v in value.items() if isinstance(v, (dict, list))]
        if bad:
            raise ConfigError(f"config field '{path}.{bad[0]}': must be a plain value")
        return dict(value)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config field '{path}': got {value!r}; must be a list of names")
        return list(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config field '{path}': got {value!r}; must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config field '{path}': got {value!r}; must be an integer")
        return _check_range(value, path, meta)
    if hint is float:
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as text
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config field '{path}': got {value!r}; must be a number")
        return _check_range(float(value), path, meta)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"config field '{path}': got {value!r}; must be a non-empty string")
        return value
    raise ConfigError(f"config field '{path}': unsupported type {hint}")  # pragma: no cover


def _check_range(value: float, path: str, meta: Any) -> Any:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and value < low:
        raise ConfigError(f"config field '{path}': got {value!r}; must be >= {low}")
    if high is not None and value > high:
        raise ConfigError(f"config field '{path}': got {value!r}; must be <= {high}")
    return value
