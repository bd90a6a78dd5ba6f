"""Config sections of the online updater: its replay buffer, what triggers a round, how a
round fine-tunes, the gate a candidate passes, and each key's re-learning."""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from streamae.config.fields import Bool, Duration, Float, Int, Text, _opt, section


@section
class ReplayBufferConfig:
    """The replay buffer: the normal windows a round learns from."""

    scope: Literal["global", "per-key"] = _opt(
        "global", "one buffer over all keys, or one per key (capacities then per key)")
    recent: Int = _opt(20_000, "newest normal windows kept", min=16)
    reservoir: Int = _opt(20_000, "uniform sample of older windows (0: none)", min=0)
    quarantine: Int = _opt(5_000, "windows from inside alarms held until confirmed normal",
                           min=1)


@section
class TriggerConfig:
    """When a fine-tuning round runs."""

    every_points: Int = _opt(0, "a round every N scored windows (0: off)", min=0)
    every: Duration = _opt(0.0, "a round every T of event time (0: off)", min=0.0)
    drift: Literal["none", "adwin", "page-hinkley", "kswin"] = _opt(
        "adwin", "river drift detector on the window-score stream")
    min_windows: Int = _opt(2_000, "no round before the buffer holds this many windows",
                            min=16)
    cooldown: Duration = _opt(3600.0, "event time between two rounds, whatever triggers", min=0.0)


@section
class FineTuneConfig:
    """How a round fine-tunes the live model (also `streamae finetune`'s transfer-learning
    settings)."""

    epochs: Int = _opt(3, "epochs per round", min=1)
    patience: Int = _opt(2, "stop a round after this many epochs without a better "
                         "validation loss (the best epoch's weights are kept)", min=1)
    batch_size: Int = _opt(256, "windows per step", min=1)
    lr: Float = _opt(1e-4, "learning rate (well below the pretraining one)", min=0.0)
    encoder_lr_scale: Float = _opt(0.1, "pretrained encoder layers learn this much slower",
                                   min=0.0, max=1.0)
    freeze_encoder: Bool = _opt(False, "keep the whole encoder fixed (feature extractor)")
    freeze_layers: Int = _opt(0, "keep the first k encoder layers fixed", min=0)
    time_budget: Duration = _opt(120.0, "longest round", min=1.0)
    device: Literal["auto", "cpu", "cuda"] = _opt("auto", "auto: CUDA when present")


@section
class GateConfig:
    """What a candidate must show on the buffer's held-out windows before it goes live."""

    holdout_fraction: Float = _opt(0.2, "newest share of the buffer held out for the gate",
                                   min=0.05, max=0.5)
    tolerance: Float = _opt(-0.1, "a candidate's held-out loss may exceed the live model's "
                            "by this share at most; negative: it must beat it by that share "
                            "(a swap restarts thresholds, which costs false alarms: marginal "
                            "gains are not worth one)", min=-0.99)
    alarm_rate: Float = _opt(0.002, "largest allowed rise of the alarm rate on recent normal "
                             "windows (shadow scoring)", min=0.0)
    incident_keep: Float = _opt(0.5, "of the alarm windows standing out from recent normal "
                                "under the live model, this share must still under the "
                                "candidate (0: no check)", min=0.0, max=1.0)


@section
class RelearnConfig:
    """Each key's re-learning: after a change of its normal, and after a model swap."""

    rescale_after: Duration = _opt(3600.0, "a key in alarm this long gets new scaling of its "
                                "moved channels if that makes its windows score as normal "
                                "again (a recalibrated sensor; 0: off)",
                                min=0.0)
    admit_after: Duration = _opt(0.0, "a key in alarm this long is taken as a change of normal: "
                              "its quarantined windows enter the buffer (0, the default: "
                              "only when an operator admits them; a long alarm re-scaling "
                              "does not explain may be an incident)", min=0.0)
    calibration_points: Int = _opt(
        1000, "after a swap, each key's threshold is fitted to this many of its recent "
        "scores under the new model, capped at its threshold as it caps its own unless most "
        "are over it (at least threshold.init_points are needed)", min=10)


@section
class UpdaterConfig:
    """Online updates: replay buffer, triggers, fine-tuning, gate, per-key re-learning."""

    enabled: Bool = _opt(False, "run the online updater inside `streamae run`")
    store: Text | None = _opt(None, "model store directory for accepted versions (the daemon "
                             "starts from its live version when it has one)")
    buffer: ReplayBufferConfig = field(default_factory=ReplayBufferConfig)
    triggers: TriggerConfig = field(default_factory=TriggerConfig)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    relearn: RelearnConfig = field(default_factory=RelearnConfig)


# Fields of the flat updater section of earlier versions and where they live now.
MOVED = {
    **{f: f"buffer.{f}" for f in ("recent", "reservoir", "quarantine")},
    **{f: f"triggers.{f}" for f in ("every_points", "every", "drift", "min_windows",
                                    "cooldown")},
    **{f: f"finetune.{f}" for f in ("epochs", "patience", "batch_size", "lr",
                                    "encoder_lr_scale", "freeze_encoder", "freeze_layers",
                                    "time_budget", "device")},
    "holdout_fraction": "gate.holdout_fraction", "gate_tolerance": "gate.tolerance",
    "gate_alarm_rate": "gate.alarm_rate", "gate_incident_keep": "gate.incident_keep",
    **{f: f"relearn.{f}" for f in ("rescale_after", "admit_after", "calibration_points")},
}
