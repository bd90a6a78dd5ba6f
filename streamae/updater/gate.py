"""The validation gate: a candidate replaces the live model only if it is no worse.

Two checks on data the candidate was not trained on:

1. held-out loss: its reconstruction loss on the held-out newest windows is at most
   ``1 + gate_tolerance`` times the live model's;
2. shadow scoring: on recent normal windows, each model's threshold is set on the first
   half (the quantile ``1 - threshold.risk``) and its alarm rate measured on the second;
   the candidate's may exceed the live one's by ``gate_alarm_rate`` at most. A model that
   learnt anomalies as normal, or that is simply broken, fails one of the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamae.config import ThresholdConfig, UpdaterConfig
from streamae.models.detector import Detector


@dataclass
class GateResult:
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def window_scores(detector: Detector, windows: np.ndarray, raw: bool = True) -> np.ndarray:
    """Mean squared reconstruction error per window (``raw``: before the score scale)."""
    step, _ = detector.score(windows, batch_size=1024)
    return step.mean(axis=1) / (detector.score_scale if raw else 1.0)


def calibrate(live: Detector, candidate: Detector, recent: np.ndarray,
              q: float = 0.99) -> float:
    """Set the candidate's score scale so that its scores on recent normal windows match
    the live model's at quantile ``q``: thresholds learnt on the live scores stay valid
    after a swap (no alarm storm, no blind period) and keep adapting from there."""
    live_q = float(np.quantile(window_scores(live, recent, raw=False), q))
    cand_q = float(np.quantile(window_scores(candidate, recent), q))
    candidate.score_scale = live_q / cand_q if cand_q > 0 and live_q > 0 else 1.0
    return candidate.score_scale


def alarm_rate(scores: np.ndarray, risk: float) -> float:
    """Threshold from the first half of the scores, rate of exceedances in the second."""
    half = len(scores) // 2
    threshold = np.quantile(scores[:half], 1.0 - risk)
    return float(np.mean(scores[half:] > threshold))


def validate(live: Detector, candidate: Detector, holdout: np.ndarray, recent: np.ndarray,
             cfg: UpdaterConfig, threshold: ThresholdConfig) -> GateResult:
    live_loss = float(window_scores(live, holdout).mean())
    cand_loss = float(window_scores(candidate, holdout).mean())
    risk = max(threshold.risk, 1.0 / max(len(recent) // 2, 1))
    live_rate = alarm_rate(window_scores(live, recent), risk)
    cand_rate = alarm_rate(window_scores(candidate, recent), risk)
    metrics = {"live_loss": live_loss, "candidate_loss": cand_loss,
               "live_alarm_rate": live_rate, "candidate_alarm_rate": cand_rate,
               "holdout_windows": len(holdout), "recent_windows": len(recent)}
    reasons = []
    if not np.isfinite(cand_loss) or cand_loss > live_loss * (1 + cfg.gate_tolerance):
        reasons.append(f"held-out loss {cand_loss:.5g} is worse than the live model's "
                       f"{live_loss:.5g} (tolerance {cfg.gate_tolerance:.0%})")
    if cand_rate > live_rate + cfg.gate_alarm_rate:
        reasons.append(f"alarm rate on recent normal data would rise from {live_rate:.4f} "
                       f"to {cand_rate:.4f} (allowed +{cfg.gate_alarm_rate})")
    return GateResult(not reasons, reasons, metrics)
