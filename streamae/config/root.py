"""The whole configuration and the checks that span sections."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from streamae.config.detection import (AlarmConfig, CalibrationConfig, DataConfig, EnsembleConfig,
                                       ModelConfig, NoveltyConfig, ThresholdConfig, TrainConfig,
                                       TransformerConfig, WindowConfig)
from streamae.config.fields import section
from streamae.config.service import DaemonConfig, InputConfig, KafkaConfig, ScoringConfig
from streamae.config.updater import UpdaterConfig
from streamae.errors import ConfigError


@section
class Config:
    """The whole configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: ModelConfig = field(default_factory=EnsembleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
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
        d = self.daemon
        if d.delivery == "exactly-once":  # an interval is one transaction: it must fit
            limit = float(self.kafka.client.get("transaction_timeout_ms", 60_000)) / 1000
            if d.commit_every + d.commit_timeout >= limit:
                raise ConfigError(
                    f"config field 'daemon.commit_every': got {d.commit_every:g} s; with "
                    f"daemon.commit_timeout ({d.commit_timeout:g} s) it must stay under the "
                    f"producer's transaction timeout ({limit:g} s), or the broker aborts "
                    "every interval's transaction and the daemon replays it for ever; lower "
                    "it or raise kafka.client.transaction_timeout_ms")
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
