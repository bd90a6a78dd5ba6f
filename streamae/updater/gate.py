"""The validation gate: a candidate replaces the live model only if it is no worse.

Two checks on data the candidate was not trained on:

1. held-out loss: its training loss (reconstruction, forecast) on the held-out newest
   windows is at most ``1 + tolerance`` times the live model's;
2. shadow scoring: on recent normal windows, each model's threshold is set on every other
   window (the quantile ``1 - threshold.risk``) and its alarm rate measured on the rest;
   the candidate's may exceed the live one's by ``alarm_rate`` (plus two binomial
   standard errors of sampling noise) at most;
3. incidents still stand out: of the quarantined windows (from inside alarms, never
   admitted as normal) the share scoring above the 99th percentile of the recent normal
   windows' scores, under the candidate, is at least ``incident_keep`` times the
   live model's. A model that learnt an incident as normal no longer tells it apart.

A model that learnt anomalies as normal, or that is simply broken, fails one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamae.config import GateConfig, ThresholdConfig
from streamae.models.detector import Detector
from streamae.models.train import held_out_loss


@dataclass
class GateResult:
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def window_scores(detector: Detector, windows: np.ndarray) -> np.ndarray:
    """Calibrated score per window (mean over its steps)."""
    step, _ = detector.score(windows, batch_size=1024)
    return step.mean(axis=1)


def alarm_rate(scores: np.ndarray, risk: float) -> float:
    """Threshold from every other window, rate of exceedances in the rest (interleaved,
    so a trend in the recent data does not pass for a worse model)."""
    threshold = np.quantile(scores[0::2], 1.0 - risk)
    return float(np.mean(scores[1::2] > threshold))


def standing_out(scores: np.ndarray, normal: np.ndarray) -> float:
    """Share of ``scores`` above the 99th percentile of the ``normal`` scores."""
    return float(np.mean(scores > np.quantile(normal, 0.99))) if len(scores) else np.nan


def validate(live: Detector, candidate: Detector, holdout: np.ndarray, recent: np.ndarray,
             cfg: GateConfig, threshold: ThresholdConfig,
             quarantined: np.ndarray | None = None) -> GateResult:
    live_loss = held_out_loss(live.model, holdout)
    cand_loss = held_out_loss(candidate.model, holdout)
    risk = max(threshold.risk, 1.0 / max(len(recent) // 2, 1))
    live_recent, cand_recent = window_scores(live, recent), window_scores(candidate, recent)
    live_rate, cand_rate = alarm_rate(live_recent, risk), alarm_rate(cand_recent, risk)
    metrics = {"live_loss": live_loss, "candidate_loss": cand_loss,
               "live_alarm_rate": live_rate, "candidate_alarm_rate": cand_rate,
               "holdout_windows": len(holdout), "recent_windows": len(recent)}
    reasons = []
    if not np.isfinite(cand_loss) or cand_loss > live_loss * (1 + cfg.tolerance):
        if cfg.tolerance < 0 and np.isfinite(cand_loss) and cand_loss <= live_loss:
            reasons.append(f"held-out loss {cand_loss:.5g} beats the live model's "
                           f"{live_loss:.5g} by {1 - cand_loss / live_loss:.1%}, less than "
                           f"the {-cfg.tolerance:.0%} required (updater.gate.tolerance)")
        else:
            reasons.append(f"held-out loss {cand_loss:.5g} is worse than the live model's "
                           f"{live_loss:.5g} (tolerance {cfg.tolerance:.0%})")
    # allow for sampling noise: two binomial standard errors of the live rate
    half = max(len(recent) // 2, 1)
    noise = 2 * np.sqrt(max(live_rate, 1 / half) * (1 - live_rate) / half)
    if cand_rate > live_rate + cfg.alarm_rate + noise:
        reasons.append(f"alarm rate on recent normal data would rise from {live_rate:.4f} "
                       f"to {cand_rate:.4f} (allowed +{cfg.alarm_rate} + {noise:.4f} "
                       "sampling noise)")
    if quarantined is not None and len(quarantined) and len(recent):
        live_out = standing_out(window_scores(live, quarantined), live_recent)
        cand_out = standing_out(window_scores(candidate, quarantined), cand_recent)
        metrics.update(live_incidents_out=live_out, candidate_incidents_out=cand_out,
                       quarantined_windows=len(quarantined))
        if cand_out < cfg.incident_keep * live_out:
            reasons.append(f"alarm windows stand out from recent normal in {cand_out:.1%} "
                           f"of cases under the candidate against {live_out:.1%} under the "
                           f"live model (at least {cfg.incident_keep:.0%} of that "
                           "required): it learnt incidents as normal")
    return GateResult(not reasons, reasons, metrics)
