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

from streamae.durations import Span, parse_duration
from streamae.errors import ConfigError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _opt(default: Any, help: str, **checks: Any) -> Any:
    """A field with a help text and optional checks (min, max, duration)."""
    return field(default=default, metadata={"help": help, **checks})


KIND_HELP = "model kind: lstm | transformer | linear | ensemble (see README: models)"


def _opt_dict(help: str) -> Any:
    return field(default_factory=dict, metadata={"help": help})


@dataclass(frozen=True)
class DataConfig:
    """Column roles in files and rows."""

    timestamp_column: str = _opt("timestamp", "column holding ISO 8601 text or epoch numbers")
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = _opt(
        "auto", "unit of numeric timestamps in files (auto: by magnitude, as for Kafka input)")
    key_column: str = _opt("key", "column naming the sensor/entity; one key if absent")
    label_column: str = _opt("label", "ground-truth column, used for evaluation only")
    channels: list[str] | None = _opt(None, "channel columns; default: every other numeric column")
    default_key: str = _opt("series", "key used when the input has no key column")


@dataclass(frozen=True)
class WindowConfig:
    """Per-key sliding windows and the policy for imperfect points."""

    size: int | Literal["auto"] = _opt(
        64, "points per window (W); auto: the dominant period of the training data "
        "(autocorrelation), within min_size..max_size (64 when there is none)", min=4, max=4096)
    min_size: int = _opt(16, "auto: smallest window", min=4, max=4096)
    max_size: int = _opt(128, "auto: largest window", min=4, max=4096)
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

    kind: Literal["lstm"] = _opt("lstm", KIND_HELP)
    hidden: int = _opt(64, "LSTM hidden units", min=1)
    latent: int = _opt(16, "bottleneck size (keep it below window x channels)", min=1)
    layers: int = _opt(1, "stacked LSTM layers in encoder and decoder", min=1, max=8)
    dropout: float = _opt(0.0, "dropout between stacked layers", min=0.0, max=0.9)
    variational: bool = _opt(False, "variational bottleneck (mean/log-variance, KL term)")
    beta: float = _opt(0.01, "weight of the KL term when variational", min=0.0)
    forecast: bool = _opt(True, "a head forecasts every next step from the encoder's past; "
                          "its error joins the reconstruction error")


@dataclass(frozen=True)
class TransformerConfig:
    """Transformer sequence autoencoder."""

    kind: Literal["transformer"] = _opt("transformer", KIND_HELP)
    d_model: int = _opt(32, "token width", min=4)
    heads: int = _opt(4, "attention heads (must divide d_model)", min=1)
    layers: int = _opt(2, "encoder layers (the decoder has the same number)", min=1, max=12)
    ff: int = _opt(64, "feed-forward width", min=4)
    latent: int = _opt(16, "bottleneck size", min=1)
    dropout: float = _opt(0.0, "dropout in attention and feed-forward", min=0.0, max=0.9)
    forecast: bool = _opt(True, "a head forecasts every next step from the (causally "
                          "masked) encoder's past; its error joins the reconstruction error")


@dataclass(frozen=True)
class LinearConfig:
    """Linear autoencoder: principal components of training windows (closed form)."""

    kind: Literal["linear"] = _opt("linear", KIND_HELP)
    components: int = _opt(512, "most principal components kept", min=1)
    variance: float = _opt(0.95, "fewest components explaining this share of the training "
                           "windows' variance (up to components)", min=0.5, max=1.0)


MemberConfig = LSTMConfig | TransformerConfig | LinearConfig


@dataclass(frozen=True)
class EnsembleConfig:
    """Members of any kind, each calibrated on its own; the score is their mean."""

    kind: Literal["ensemble"] = _opt("ensemble", KIND_HELP)
    members: list[MemberConfig] = field(
        default_factory=lambda: [LSTMConfig(), LinearConfig()],
        metadata={"help": "member models (each a model section with its kind)"})


ModelConfig = LSTMConfig | TransformerConfig | LinearConfig | EnsembleConfig
MEMBER_CONFIGS: dict[str, type] = {"lstm": LSTMConfig, "transformer": TransformerConfig,
                                   "linear": LinearConfig}
MODEL_CONFIGS: dict[str, type] = {**MEMBER_CONFIGS, "ensemble": EnsembleConfig}


@dataclass(frozen=True)
class TrainConfig:
    """Offline training on history."""

    epochs: int = _opt(12, "maximum epochs", min=1)
    batch_size: int = _opt(256, "windows per step", min=1)
    lr: float = _opt(1e-3, "Adam learning rate", min=0.0)
    weight_decay: float = _opt(0.0, "Adam weight decay", min=0.0)
    val_fraction: float = _opt(0.2, "newest share of every key's windows held out: early "
                               "stopping, and the normal errors the scores are calibrated on",
                               min=0.05, max=0.5)
    min_epochs: int = _opt(3, "epochs before early stopping may stop", min=1)
    patience: int = _opt(3, "epochs without validation gain before stopping", min=1)
    lr_schedule: Literal["cosine", "constant"] = _opt(
        "cosine", "cosine: the learning rate decays to a tenth over the epochs")
    time_budget: float | None = _opt(None, "longest training run (duration; none: no limit)",
                                     duration=True)
    stride: int = _opt(1, "step between training windows", min=1)
    max_windows: int = _opt(50_000, "cap on training windows (evenly subsampled)", min=16)
    noise_std: float = _opt(0.0, "denoising: std of Gaussian input noise (scaled units)", min=0.0)
    mask_ratio: float = _opt(0.0, "denoising: share of time steps zeroed in the input", min=0.0,
                             max=0.9)
    seed: int = _opt(0, "seed for weights, shuffling and noise")
    device: Literal["auto", "cpu", "cuda"] = _opt("auto", "auto: CUDA when present")
    threads: int = _opt(0, "torch CPU threads while training (0: all cores); scoring uses "
                        "scoring.threads", min=0)


@dataclass(frozen=True)
class CalibrationConfig:
    """How a model's per-channel errors become one score. Fitted at training time on the
    held-out normal windows and kept in the checkpoint."""

    aggregate: Literal["topk", "mean", "max", "mahalanobis"] = _opt(
        "topk", "channels' calibrated errors -> one score: mean of the top_k largest, mean, "
        "max, or Mahalanobis distance over the residual vector")
    top_k: int = _opt(0, "topk: how many channels (0: the square root of the channel count)",
                      min=0)
    smooth: int = _opt(16, "each point's score is the mean of the newest this many steps' "
                       "calibrated errors (1: none); must leave room in the window",
                       min=1, max=256)
    per_channel: bool = _opt(True, "standardise each channel's errors on its own (false: one "
                             "location and spread for all channels of a head)")
    floor: float = _opt(0.1, "a channel's error spread is at least this share of the median "
                        "channel's, so one constant in training cannot blow up", min=1e-3,
                        max=1.0)
    input_clip: float = _opt(10.0, "scaled inputs are clipped to +-this before the model",
                             min=1.0)


@dataclass(frozen=True)
class ThresholdConfig:
    """Streaming per-key threshold on the score."""

    kind: Literal["tail", "spot", "quantile"] = _opt(
        "tail", "tail: each score's tail probability against the key's own recent scores | "
        "spot: peaks-over-threshold over all past scores | quantile: streaming quantile")
    risk: float = _opt(1e-4, "tail/spot: probability of a normal score exceeding the "
                       "threshold", min=1e-9, max=0.5)
    memory: int = _opt(5000, "tail: recent scores per key the tail is fitted to (the "
                       "held-out training scores until a key has its own)", min=50,
                       max=100_000)
    sample_every: int = _opt(8, "tail: one score in this many enters a key's memory and "
                             "refits its tail (neighbouring smoothed scores say little new)",
                             min=1)
    learn: Literal["capped", "calm", "all"] = _opt(
        "capped", "tail: which points a key's memory learns: capped: all, capped at the "
        "threshold (one alarm barely moves it, a level that stays does) | calm: only those "
        "outside alarms, capped (alarms never teach it; a new normal waits for the "
        "updater) | all: all as they are")
    relearn_above: float = _opt(
        0.05, "tail, learn capped: a key crossing its threshold on more than this share of "
        "its recent points has a threshold that no longer describes it (not an anomaly: "
        "hundreds of times what risk allows); its points are learnt as they are until it "
        "does again", min=0.0, max=1.0)
    init_points: int = _opt(200, "spot/quantile: scores a key needs before it has a "
                            "threshold", min=10)
    init_quantile: float = _opt(0.98, "spot: quantile that starts the tail", min=0.5, max=0.9999)
    quantile: float = _opt(0.995, "quantile: which quantile is the threshold", min=0.5, max=0.99999)
    margin: float = _opt(1.0, "quantile: threshold = margin x quantile", min=0.1)


@dataclass(frozen=True)
class AlarmConfig:
    """Post-processing that turns threshold crossings into few, meaningful alarms. Spans
    are event time ('10m') or a count of the key's scored points ('16 points')."""

    enter_level: float = _opt(1.0, "open when score >= enter_level x threshold", min=0.01)
    exit_level: float = _opt(0.6, "calm when score < exit_level x threshold", min=0.0)
    min_hits: int = _opt(3, "open only after this many crossings among the key's last "
                         "hit_window scored points", min=1, max=48)
    hit_window: int = _opt(8, "points the crossings of min_hits are counted over", min=1,
                           max=48)
    min_duration: Span = _opt(Span(0.0), "score must stay above the enter level this long "
                              "to open", span=True)
    resolve_after: Span = _opt(Span(16, True), "calm this long before an alarm resolves (so "
                               "alarms closer than this merge into one)", span=True)
    suppress: Span = _opt(Span(32, True), "after a resolve, no new alarm on the key for "
                          "this long", span=True)
    prune: float = _opt(0.0, "a new alarm opens only at a score of at least this share of "
                        "the key's strongest alarm peak within prune_memory (0: off)", min=0.0,
                        max=1.0)
    prune_memory: Span = _opt(Span(1000, True), "how long a strong alarm's peak prunes "
                              "weaker ones", span=True)
    update_every: Span = _opt(Span(300.0), "at most one update event per alarm this often",
                              span=True)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # numbers and text are accepted in code too
            if f.metadata.get("span"):
                object.__setattr__(self, f.name, Span.parse(getattr(self, f.name)))


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


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: ModelConfig = field(default_factory=EnsembleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
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
        w = self.window
        smallest = w.min_size if w.size == "auto" else w.size
        if w.hop > smallest:
            field_ = "window.min_size" if w.size == "auto" else "window.size"
            raise ConfigError(
                f"config field 'window.hop': got {w.hop}; must be <= {field_} "
                f"({smallest}) so that every point lands in a scored window")
        if w.min_size > w.max_size:
            raise ConfigError(f"config field 'window.min_size': got {w.min_size}; must be <= "
                              f"window.max_size ({w.max_size})")
        if self.alarm.min_hits > self.alarm.hit_window:
            raise ConfigError(
                f"config field 'alarm.min_hits': got {self.alarm.min_hits}; must be <= "
                f"alarm.hit_window ({self.alarm.hit_window})")
        if self.alarm.exit_level > self.alarm.enter_level:
            raise ConfigError(
                f"config field 'alarm.exit_level': got {self.alarm.exit_level}; must be <= "
                f"alarm.enter_level ({self.alarm.enter_level}) so that alarms can close")
        for path, model in model_parts(self.model):
            if isinstance(model, TransformerConfig) and model.d_model % model.heads:
                raise ConfigError(
                    f"config field '{path}.heads': got {model.heads}; must divide "
                    f"{path}.d_model ({model.d_model})")
        if isinstance(self.model, EnsembleConfig) and not self.model.members:
            raise ConfigError("config field 'model.members': empty; name at least one member "
                              "model (e.g. {kind: lstm})")


def model_parts(model: Any, path: str = "model") -> list[tuple[str, Any]]:
    """The model config and, for an ensemble, each member's, with their field paths."""
    if isinstance(model, EnsembleConfig):
        return [(path, model)] + [p for i, m in enumerate(model.members)
                                  for p in model_parts(m, f"{path}.members[{i}]")]
    return [(path, model)]


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
    """Plain, YAML/JSON-ready data for a config dataclass (spans as text: '32 points')."""
    def plain(value: Any) -> Any:
        if isinstance(value, Span):
            return str(value)
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(config)


SECRET_FIELD = re.compile(r"password|secret|token|credential|signing_key", re.I)
_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


def masked(data: Any) -> Any:
    """A copy of plain config data safe to print, log or write into a report: the value of
    every secret-looking field becomes ``***`` (a ``${VAR}`` reference stays: it names the
    secret, it does not hold it)."""
    if isinstance(data, dict):
        return {k: ("***" if isinstance(k, str) and SECRET_FIELD.search(k) and v is not None
                    and not (isinstance(v, str) and _REFERENCE.match(v)) else masked(v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v) for v in data]
    return data


def public_dict(config: Any) -> dict[str, Any]:
    """:func:`config_to_dict` with secrets masked: what ``config show`` and reports render."""
    return masked(config_to_dict(config))


def commented_yaml(config: Config) -> str:
    """Every field of ``config`` as YAML with its meaning above it (``config show``);
    secrets masked. Loads back as the same settings."""
    import json
    import textwrap

    data = json.loads(json.dumps(public_dict(config)))
    out: list[str] = []
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        doc = (type(value).__doc__ or "").strip().splitlines()[0]
        out += [f"# {doc}", f"{section.name}:"]
        for f in dataclasses.fields(value):
            meaning = f.metadata.get("help", "")
            out += [f"  # {line}" for line in textwrap.wrap(meaning, 86)]
            text = yaml.safe_dump(data[section.name][f.name], default_flow_style=True,
                                  width=1 << 20).strip()
            out.append(f"  {f.name}: {text.removesuffix('...').strip()}")
        out.append("")
    return "\n".join(out)


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix or 'top level'}' must be a mapping, "
                          f"got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"'{prefix}'" if prefix else "the top level"
        hint = ""
        if cls in MODEL_CONFIGS.values():
            hint = (f" (fields of model kind {data.get('kind', cls.kind)!r}; the default "
                    f"kind is {EnsembleConfig.kind!r}: set kind to use another model's fields)")
        raise ConfigError(f"unknown config field(s) {', '.join(repr(u) for u in unknown)} in {where}; "
                          f"allowed: {', '.join(fields)}{hint}")
    kwargs = {}
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if name == "model" and cls is Config:
            hint = _model_class(value, path, MODEL_CONFIGS, EnsembleConfig.kind)
        elif name == "members" and cls is EnsembleConfig:
            if not isinstance(value, list):
                raise ConfigError(f"config field '{path}': got {value!r}; must be a list of "
                                  "member models, e.g. [{kind: lstm}, {kind: linear}]")
            kwargs[name] = [_build(_model_class(v, f"{path}[{i}]", MEMBER_CONFIGS, None), v,
                                   f"{path}[{i}]") for i, v in enumerate(value)]
            continue
        kwargs[name] = _coerce(hint, value, path, fields[name].metadata)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"config section '{prefix}': {exc}") from None


def _model_class(value: Any, path: str, allowed: dict[str, type], default: str | None) -> type:
    """The config class a model section's ``kind`` names."""
    if not isinstance(value, dict):
        raise ConfigError(f"config section '{path}' must be a mapping, got {value!r}")
    kind = value.get("kind", default)
    if kind not in allowed:
        what = "missing" if kind is None else f"got {kind!r}"
        raise ConfigError(f"config field '{path}.kind': {what}; allowed: {', '.join(allowed)}")
    return allowed[kind]


def _coerce(hint: Any, value: Any, path: str, meta: Any) -> Any:
    origin = typing.get_origin(hint)
    if meta.get("span"):
        try:
            return Span.parse(value)
        except ValueError as exc:
            raise ConfigError(f"config field '{path}': got {value!r}; {exc}") from None
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for choice in inner[1:]:  # a literal alternative, e.g. int | Literal["auto"]
            if typing.get_origin(choice) is Literal and value in typing.get_args(choice):
                return value
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
