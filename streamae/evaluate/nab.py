"""The NAB score (Numenta Anomaly Benchmark), following NAB's published scoring rules.

Per series, with labelled windows (contiguous ``label == 1`` runs) and detections:

* the first ``min(floor(0.15 n), 750)`` rows are probationary: not scored;
* a window starts at ``-fn_weight``; its best detection replaces that with
  ``tp_weight * S(p) / S(-1)``, ``p = -(right - i + 1) / width`` (earlier is better);
* a detection outside windows adds ``fp_weight * S(p)`` with ``p`` the distance past the
  previous window's right edge in units of its width - 1 (``p = 3``, i.e. ``-fp_weight``,
  before any window); ``S(x) = 2 sigmoid(-5x) - 1``, and ``S = -1`` from ``x >= 3``.

The corpus score is ``100 (raw - null) / (perfect - null)`` over all series together,
where null detects nothing and perfect is ``tp_weight`` per window. streamae's detections
are alarm starts (an operator is paged once per alarm, not once per alarmed row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamae.evaluate.metrics import segments

PROFILES = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_fp_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_fn_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


def scaled_sigmoid(x: float) -> float:
    return -1.0 if x >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


@dataclass
class NabSeries:
    """One series' raw score and the null/perfect references, per profile."""

    raw: dict[str, float]
    null: dict[str, float]
    perfect: dict[str, float]


def detections_from_alarms(anomaly: np.ndarray) -> np.ndarray:
    """Rows where an alarm starts (rising edges of the 0/1 alarm flag)."""
    a = np.asarray(anomaly) != 0
    return np.flatnonzero(a & ~np.r_[False, a[:-1]])


def score_series(labels: np.ndarray, detections: np.ndarray,
                 probation: float = 0.15) -> NabSeries:
    """NAB raw, null and perfect scores of one series (rows in time order)."""
    n = len(labels)
    windows = segments(np.asarray(labels))
    probationary = min(math.floor(probation * n), probation * 5000)
    scored_windows = [(a, b) for a, b in windows if b - 1 >= probationary]
    window_of = np.full(n, -1)
    for j, (a, b) in enumerate(windows):
        window_of[a:b] = j
    best = {j: None for j, (a, b) in enumerate(windows) if (a, b) in scored_windows}
    fp_parts: list[float] = []
    for i in sorted(int(d) for d in detections):
        if i < probationary:
            continue
        j = window_of[i]
        if j >= 0:
            a, b = windows[j]
            position = -((b - 1) - i + 1) / (b - a)
            value = scaled_sigmoid(position) / scaled_sigmoid(-1.0)
            best[j] = value if best[j] is None else max(best[j], value)
        else:
            before = [(a, b) for a, b in windows if b - 1 < i]
            if before:
                a, b = before[-1]
                width = b - a
                position = abs((b - 1) - i) / (width - 1) if width > 1 else 3.0
            else:
                position = 3.0
            fp_parts.append(scaled_sigmoid(position))
    raw, null, perfect = {}, {}, {}
    for name, w in PROFILES.items():
        tp_part = sum(w["tp"] * v if v is not None else -w["fn"] for v in best.values())
        raw[name] = tp_part + w["fp"] * sum(fp_parts)
        null[name] = -w["fn"] * len(best)
        perfect[name] = w["tp"] * len(best)
    return NabSeries(raw, null, perfect)


def normalized(series: list[NabSeries]) -> dict[str, float]:
    """Corpus NAB score per profile (100: perfect, 0: detects nothing)."""
    out = {}
    for name in PROFILES:
        raw = sum(s.raw[name] for s in series)
        null = sum(s.null[name] for s in series)
        perfect = sum(s.perfect[name] for s in series)
        out[name] = 100.0 * (raw - null) / (perfect - null) if perfect != null else math.nan
    return out
