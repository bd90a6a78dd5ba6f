"""Config sections of the detection path: data columns, windows, models, training,
calibration, novelty, threshold and alarms."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from annotated_types import Interval
from pydantic import Discriminator, Tag

from streamae.config.fields import (KIND_HELP, Bool, Duration, Float, Int, SpanValue, Text, _opt,
                                    section)
from streamae.durations import Span


@section
class DataConfig:
    """Column roles in files and rows."""

    timestamp_column: Text = _opt("timestamp", "column holding ISO 8601 text or epoch numbers")
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = _opt(
        "auto", "unit of numeric timestamps in files (auto: by magnitude, as for Kafka input)")
    key_column: Text = _opt("key", "column naming the sensor/entity; one key if absent")
    label_column: Text = _opt("label", "ground-truth column, used for evaluation only")
    channels: list[str] | None = _opt(None, "channel columns; default: every other numeric column")
    default_key: Text = _opt("series", "key used when the input has no key column")


@section
class WindowConfig:
    """Per-key sliding windows and the policy for imperfect points."""

    size: Annotated[Int, Interval(ge=2, le=4096)] | Literal["auto"] = _opt(
        64, "points per window (W); auto: the dominant period of the training data "
        "(autocorrelation), within min_size..max_size (64 when there is none)")
    min_size: Int = _opt(16, "auto: smallest window", min=4, max=4096)
    max_size: Int = _opt(128, "auto: largest window", min=4, max=4096)
    hop: Int = _opt(8, "score a window every h-th point; each window scores its newest h "
                    "points", min=1)
    nan_policy: Literal["ffill", "drop"] = _opt(
        "ffill", "non-finite values: carry the channel's last finite value forward, or drop the point")
    duplicate_policy: Literal["drop", "keep"] = _opt(
        "drop", "a point with the same timestamp as the key's previous point")
    max_gap: Duration | None = _opt(None, "a larger jump in time is a gap (duration; none: no "
                                    "gap check)")
    gap_policy: Literal["reset", "ignore"] = _opt(
        "reset", "after a gap: restart the key's window (re-warm) or carry on")


@section
class LSTMConfig:
    """LSTM sequence autoencoder."""

    kind: Literal["lstm"] = _opt("lstm", KIND_HELP)
    hidden: Int = _opt(64, "LSTM hidden units", min=1)
    latent: Int = _opt(16, "bottleneck size (keep it below window x channels)", min=1)
    layers: Int = _opt(1, "stacked LSTM layers in encoder and decoder", min=1, max=8)
    dropout: Float = _opt(0.0, "dropout between stacked layers", min=0.0, max=0.9)
    variational: Bool = _opt(False, "variational bottleneck (mean/log-variance, KL term)")
    beta: Float = _opt(0.01, "weight of the KL term when variational", min=0.0)
    forecast: Bool = _opt(True, "a head forecasts every next step from the encoder's past; "
                          "its error joins the reconstruction error")


@section
class TransformerConfig:
    """Transformer sequence autoencoder."""

    kind: Literal["transformer"] = _opt("transformer", KIND_HELP)
    d_model: Int = _opt(32, "token width", min=4)
    heads: Int = _opt(4, "attention heads (must divide d_model)", min=1)
    layers: Int = _opt(2, "encoder layers (the decoder has the same number)", min=1, max=12)
    ff: Int = _opt(64, "feed-forward width", min=4)
    latent: Int = _opt(16, "bottleneck size", min=1)
    dropout: Float = _opt(0.0, "dropout in attention and feed-forward", min=0.0, max=0.9)
    forecast: Bool = _opt(True, "a head forecasts every next step from the (causally "
                          "masked) encoder's past; its error joins the reconstruction error")


@section
class LinearConfig:
    """Linear autoencoder: principal components of training windows (closed form)."""

    kind: Literal["linear"] = _opt("linear", KIND_HELP)
    components: Int = _opt(512, "most principal components kept", min=1)
    variance: Float = _opt(0.95, "fewest components explaining this share of the training "
                           "windows' variance (up to components)", min=0.5, max=1.0)


def _kind_of(default: str | None) -> Any:
    """The ``kind`` a model section names (``default`` where it names none)."""
    def kind(value: Any) -> str | None:
        if isinstance(value, dict):
            return value.get("kind", default)
        return getattr(value, "kind", None)
    return kind


MemberConfig = Annotated[
    Annotated[LSTMConfig, Tag("lstm")] | Annotated[TransformerConfig, Tag("transformer")]
    | Annotated[LinearConfig, Tag("linear")], Discriminator(_kind_of(None))]


@section
class EnsembleConfig:
    """Members of any kind, each calibrated on its own; the score is their mean."""

    kind: Literal["ensemble"] = _opt("ensemble", KIND_HELP)
    members: list[MemberConfig] = field(
        default_factory=lambda: [LSTMConfig(), LinearConfig()],
        metadata={"description": "member models (each a model section with its kind)"})


ModelConfig = Annotated[
    Annotated[LSTMConfig, Tag("lstm")] | Annotated[TransformerConfig, Tag("transformer")]
    | Annotated[LinearConfig, Tag("linear")] | Annotated[EnsembleConfig, Tag("ensemble")],
    Discriminator(_kind_of("ensemble"))]
MEMBER_CONFIGS: dict[str, type] = {"lstm": LSTMConfig, "transformer": TransformerConfig,
                                   "linear": LinearConfig}
MODEL_CONFIGS: dict[str, type] = {**MEMBER_CONFIGS, "ensemble": EnsembleConfig}


@section
class TrainConfig:
    """Offline training on history."""

    epochs: Int = _opt(12, "maximum epochs", min=1)
    batch_size: Int = _opt(256, "windows per step", min=1)
    lr: Float = _opt(1e-3, "Adam learning rate", min=0.0)
    weight_decay: Float = _opt(0.0, "Adam weight decay", min=0.0)
    val_fraction: Float = _opt(0.2, "newest share of every key's windows held out: early "
                               "stopping, and the normal errors the scores are calibrated on",
                               min=0.05, max=0.5)
    min_epochs: Int = _opt(3, "epochs before early stopping may stop", min=1)
    patience: Int = _opt(3, "epochs without validation gain before stopping", min=1)
    lr_schedule: Literal["cosine", "constant"] = _opt(
        "cosine", "cosine: the learning rate decays to a tenth over the epochs")
    time_budget: Duration | None = _opt(None, "longest training run (duration; none: no limit)")
    stride: Int = _opt(1, "step between training windows", min=1)
    max_windows: Int = _opt(50_000, "cap on training windows (evenly subsampled)", min=16)
    noise_std: Float = _opt(0.0, "denoising: std of Gaussian input noise (scaled units)", min=0.0)
    mask_ratio: Float = _opt(0.0, "denoising: share of time steps zeroed in the input", min=0.0,
                             max=0.9)
    seed: Int = _opt(0, "seed for weights, shuffling and noise")
    device: Literal["auto", "cpu", "cuda"] = _opt("auto", "auto: CUDA when present")
    threads: Int = _opt(0, "torch CPU threads while training (0: all cores); scoring uses "
                        "scoring.threads", min=0)


@section
class CalibrationConfig:
    """How a model's per-channel errors become one score. Fitted at training time on the
    held-out normal windows and kept in the checkpoint."""

    aggregate: Literal["topk", "mean", "max", "mahalanobis"] = _opt(
        "topk", "channels' calibrated errors -> one score: mean of the top_k largest, mean, "
        "max, or Mahalanobis distance over the residual vector")
    top_k: Int = _opt(0, "topk: how many channels (0: the square root of the channel count)",
                      min=0)
    smooth: Int = _opt(16, "each point's score is the mean of the newest this many steps' "
                       "calibrated errors (1: none); must leave room in the window",
                       min=1, max=256)
    per_channel: Bool = _opt(True, "standardise each channel's errors on its own (false: one "
                             "location and spread for all channels of a head)")
    floor: Float = _opt(0.1, "a channel's error spread is at least this share of the median "
                        "channel's, so one constant in training cannot blow up", min=1e-3,
                        max=1.0)
    input_clip: Float = _opt(10.0, "scaled inputs are clipped to +-this before the model",
                             min=1.0)


@section
class NoveltyConfig:
    """Each key's memory of its recent normal windows, one more member of the score.

    A window's distance to the nearest window its key showed before (none overlapping
    it): what is new for this key stands out, what it keeps doing normally is learnt as it
    streams (windows in an alarm are not). Calibrated on the held-out windows at training
    time, beside the models; keys seen in training start from their history."""

    size: Int = _opt(256, "windows remembered per key (one per hop; 0: off)", min=0,
                     max=4096)
    steps: Int = _opt(8, "a window is remembered as the means of this many equal parts of "
                      "each channel", min=1, max=64)
    least: Int = _opt(16, "windows a key must remember before this member scores", min=1)
    weight: Float = _opt(0.5, "share of the score the novelty carries; the models' average "
                         "carries the rest", min=0.05, max=0.95)
    level: Float = _opt(0.35, "how much each channel's level over a window counts beside its "
                        "shape: 1 in every part, 0 not at all; 0.35 about as much as one of "
                        "8 parts, so a slow move of level is less new than a new shape",
                        min=0.0, max=1.0)


@section
class ThresholdConfig:
    """Streaming per-key threshold on the score."""

    kind: Literal["tail", "spot", "quantile"] = _opt(
        "tail", "tail: each score's tail probability against the key's own recent scores | "
        "spot: peaks-over-threshold over all past scores | quantile: streaming quantile")
    risk: Float = _opt(1e-4, "tail/spot: probability of a normal score exceeding the "
                       "threshold", min=1e-9, max=0.5)
    memory: Int = _opt(5000, "tail: recent scores per key the tail is fitted to (the "
                       "held-out training scores until a key has its own; the threshold "
                       "never goes below the one all of them give)", min=50, max=100_000)
    sample_every: Int = _opt(8, "tail: one score in this many enters a key's memory and "
                             "refits its tail (neighbouring smoothed scores say little new)",
                             min=1)
    learn: Literal["capped", "calm", "all"] = _opt(
        "capped", "tail: which points a key's memory learns: capped: all, those of an episode "
        "over the threshold (or in an alarm) capped at the threshold it began with (one "
        "alarm barely moves it, a level that stays does) | calm: only those outside alarms, "
        "capped (alarms never teach it; a new normal waits for the updater) | all: all as "
        "they are")
    relearn_above: Float = _opt(
        0.05, "tail, learn capped: a key crossing its threshold on more than this share of "
        "its recent points has a threshold that no longer describes it (not an anomaly: "
        "hundreds of times what risk allows); its points are learnt as they are until it "
        "does again", min=0.0, max=1.0)
    prior_peaks: Float = _opt(
        2.0, "tail: a key's young memory fits its tail to its own peaks pooled with the "
        "held-out training scores' tail, worth this many of its own peaks while its memory "
        "is empty and none once it is full (one or two peaks of its own cannot carry a "
        "threshold); 0: its own only", min=0.0, max=100.0)
    shape_bound: Float = _opt(
        2.0, "tail: a key's threshold lies at most this many times as far above the median "
        "of its newest scores, in their upper-quartile spreads (at least the held-out "
        "one), as its held-out training threshold lies above theirs: incidents capped at a "
        "threshold that a change lifted cannot hold it up once the bulk of its scores is "
        "back; 0: no bound", min=0.0, max=100.0)
    init_points: Int = _opt(200, "spot/quantile: scores a key needs before it has a "
                            "threshold", min=10)
    init_quantile: Float = _opt(0.98, "spot: quantile that starts the tail", min=0.5, max=0.9999)
    quantile: Float = _opt(0.995, "quantile: which quantile is the threshold", min=0.5, max=0.99999)
    margin: Float = _opt(1.0, "quantile: threshold = margin x quantile", min=0.1)


@section
class AlarmConfig:
    """Post-processing that turns threshold crossings into few, meaningful alarms. Levels
    are measured from the key's typical score (0) to its threshold (1), so they mean the
    same on any score's scale (for a tail threshold re-learning a key that moved, the
    typical score is where the key is now). Spans are event time ('10m') or a count of
    the key's scored points ('16 points')."""

    enter_level: Float = _opt(1.0, "open at this level (1: the threshold)", min=0.01)
    exit_level: Float = _opt(0.6, "calm below this level (0: the key's typical score)",
                             min=0.0)
    min_hits: Int = _opt(3, "open only after this many crossings among the key's last "
                         "hit_window scored points", min=1, max=48)
    hit_window: Int = _opt(8, "points the crossings of min_hits are counted over", min=1,
                           max=48)
    min_duration: SpanValue = _opt(Span(0.0), "score must stay above the enter level this long "
                              "to open")
    resolve_after: SpanValue = _opt(Span(16, True), "calm this long before an alarm resolves (so "
                               "alarms closer than this merge into one)")
    suppress: SpanValue = _opt(Span(32, True), "after a resolve, no new alarm on the key for "
                          "this long")
    prune: Float = _opt(0.5, "a new alarm opens only at a level of at least this share of "
                        "the key's strongest alarm peak within prune_memory (0: off)", min=0.0,
                        max=1.0)
    prune_memory: SpanValue = _opt(Span(1000, True), "how long a strong alarm's peak prunes "
                              "weaker ones")
    update_every: SpanValue = _opt(Span(300.0), "at most one update event per alarm this often")
