"""Detection metrics a person on call would recognise.

Point-adjusted F1 exists only for comparison with papers (``point_adjusted_f1``, on
request, always labelled): it rewards one lucky point inside a long segment as if the
whole segment were found, which makes random scores look excellent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1 as half-open ``(start, stop)`` row ranges."""
    x = np.concatenate([[0], np.asarray(labels, dtype=np.int8) != 0, [0]]).astype(np.int8)
    d = np.diff(x)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (step-wise, ties
    grouped); nan scores count as the lowest score; nan if there is no positive."""
    y = np.asarray(labels) != 0
    if not y.any():
        return math.nan
    s = _finite(scores)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def soft_labels(labels: np.ndarray, buffer: int) -> np.ndarray:
    """1 inside segments; ``sqrt(1 - d / (buffer + 1))`` for rows ``d <= buffer`` rows away
    from a segment (before or after); 0 elsewhere."""
    y = (np.asarray(labels) != 0).astype(np.float64)
    if buffer <= 0 or not y.any():
        return y
    idx = np.flatnonzero(y)
    pos = np.arange(len(y))
    # distance to the nearest labelled row
    right = np.searchsorted(idx, pos)
    d_right = np.where(right < len(idx), idx[np.minimum(right, len(idx) - 1)] - pos, np.inf)
    d_left = np.where(right > 0, pos - idx[np.maximum(right - 1, 0)], np.inf)
    d = np.minimum(np.abs(d_right), np.abs(d_left))
    w = np.where(d <= buffer, np.sqrt(np.clip(1 - d / (buffer + 1), 0, 1)), 0.0)
    return np.maximum(y, w)


def soft_average_precision(weights: np.ndarray, scores: np.ndarray) -> float:
    """Average precision with soft labels: a row counts ``weight`` as a hit."""
    if not (weights > 0).any():
        return math.nan
    s = _finite(scores)
    order = np.argsort(-s, kind="stable")
    s, w = s[order], weights[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each tie group
    hits = np.cumsum(w)[last]
    precision = hits / (last + 1)
    recall = hits / w.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def vus_pr(labels: np.ndarray, scores: np.ndarray, max_buffer: int = 64, steps: int = 9) -> float:
    """Range-aware AUC-PR: the volume under the precision-recall surface over label
    buffers of 0..``max_buffer`` rows (soft labels, see :func:`soft_labels`), after
    Paparrizos et al. (VLDB 2022) without their existence reward. With no buffer it is
    :func:`average_precision`; a detector that fires just before or after a segment
    earns partial credit instead of none."""
    y = np.asarray(labels) != 0
    if not y.any():
        return math.nan
    buffers = np.unique(np.linspace(0, max_buffer, steps).round().astype(int))
    return float(np.mean([soft_average_precision(soft_labels(y, int(b)), scores)
                          for b in buffers]))


def point_adjusted_f1(labels: np.ndarray, anomaly: np.ndarray) -> float:
    """Point-adjusted F1 (inflated; for comparison with papers only): a segment with any
    flagged row counts as entirely flagged."""
    y, p = np.asarray(labels) != 0, (np.asarray(anomaly) != 0).copy()
    for a, b in segments(y):
        if p[a:b].any():
            p[a:b] = True
    return point_scores(y, p)[2]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability a random positive outscores a random negative (ties count half)."""
    y = np.asarray(labels) != 0
    if y.all() or not y.any():
        return math.nan
    s = _finite(scores)
    ranks = _average_ranks(s)
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _finite(scores: np.ndarray) -> np.ndarray:
    """Scores with nan (no score yet) below every real score, so they rank last."""
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    floor = (s[ok].min() - 1.0) if ok.any() else 0.0
    return np.where(ok, s, floor)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    xs = x[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(xs)) + 1, len(xs)]
    ranks = np.empty(len(x))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2
    return ranks


@dataclass
class EventScores:
    """Event-level counts and rates; ``delays`` are seconds from segment start to the
    first alarm that found it (negative when found early, inside the tolerance)."""

    precision: float
    recall: float
    f1: float
    found: int
    segments: int
    alarms: int
    false_alarms: int
    delays: list[float]

    @property
    def mean_delay(self) -> float:
        return float(np.mean(self.delays)) if self.delays else math.nan

    @property
    def median_delay(self) -> float:
        return float(np.median(self.delays)) if self.delays else math.nan


def alarm_starts(anomaly: np.ndarray) -> list[tuple[int, int]]:
    """Alarms as the row ranges where the 0/1 alarm flag is 1."""
    return segments(anomaly)


def event_scores(labels: np.ndarray, anomaly: np.ndarray, ts: np.ndarray, early: float = 0.0,
                 late: float = 0.0) -> EventScores:
    """Event-level precision/recall/F1 for one series in time order.

    A labelled segment is found if an alarm overlaps it, widened by ``early`` seconds
    before and ``late`` seconds after. An alarm that overlaps no widened segment is a
    false alarm. Precision = alarms that hit / all alarms; recall = segments found / all.
    """
    ts = np.asarray(ts, dtype=np.float64)
    truth = segments(labels)
    alarms = alarm_starts(anomaly)
    windows = [(ts[a] - early, ts[b - 1] + late) for a, b in truth]
    hit_alarms = 0
    first_hit: dict[int, float] = {}
    for a, b in alarms:
        lo, hi = ts[a], ts[b - 1]
        hit = False
        for j, (wlo, whi) in enumerate(windows):
            if lo <= whi and hi >= wlo:
                hit = True
                first_hit.setdefault(j, max(lo, wlo) - ts[truth[j][0]])
        hit_alarms += hit
    found = len(first_hit)
    precision = hit_alarms / len(alarms) if alarms else (math.nan if not truth else 0.0)
    recall = found / len(truth) if truth else math.nan
    f1 = _f1(precision, recall)
    return EventScores(precision, recall, f1, found, len(truth), len(alarms),
                       len(alarms) - hit_alarms, [first_hit[j] for j in sorted(first_hit)])


def point_scores(labels: np.ndarray, anomaly: np.ndarray) -> tuple[float, float, float]:
    """Point-wise precision, recall, F1 of the alarm flag."""
    y, p = np.asarray(labels) != 0, np.asarray(anomaly) != 0
    tp = float(np.sum(y & p))
    precision = tp / p.sum() if p.any() else math.nan
    recall = tp / y.sum() if y.any() else math.nan
    return precision, recall, _f1(precision, recall)


def false_alarms_per_day(labels: np.ndarray, anomaly: np.ndarray, ts: np.ndarray) -> float:
    """Alarms that start outside any labelled segment, per day of normal time."""
    y = np.asarray(labels) != 0
    starts = [a for a, _ in alarm_starts(anomaly) if not y[a]]
    step = np.diff(np.asarray(ts, dtype=np.float64))
    normal_seconds = float(np.sum(step[~y[1:]])) if len(step) else 0.0
    return len(starts) / (normal_seconds / 86400.0) if normal_seconds > 0 else math.nan


def _f1(p: float, r: float) -> float:
    if math.isnan(p) or math.isnan(r) or p + r == 0:
        return 0.0 if not (math.isnan(p) or math.isnan(r)) else math.nan
    return 2 * p * r / (p + r)
