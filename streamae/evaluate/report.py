"""Metrics per key and macro-averaged, for streamae and baselines side by side."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamae.config import Config
from streamae.evaluate.baselines import BASELINES
from streamae.evaluate import nab
from streamae.evaluate.metrics import (average_precision, event_scores, false_alarms_per_day,
                                       point_adjusted_f1, point_scores, roc_auc, vus_pr)
from streamae.threshold import Decision
from streamae.types import Frame

HEADLINE = ("auc_pr", "vus_pr", "roc_auc", "event_precision", "event_recall", "event_f1",
            "composite_f1", "mean_delay_s", "false_alarms_per_day", "nab_standard", "alarms",
            "alarm_time_share", "normal_in_alarm")
NAB_COLUMNS = {"standard": "nab_standard", "reward_low_fp_rate": "nab_low_fp",
               "reward_low_fn_rate": "nab_low_fn"}


def key_metrics(labels: np.ndarray, score: np.ndarray, anomaly: np.ndarray, ts: np.ndarray,
                early: float, late: float, point_adjusted: bool = False) -> dict[str, float]:
    """All metrics of one key's rows (time order)."""
    ev = event_scores(labels, anomaly, ts, early, late)
    pp, pr, pf = point_scores(labels, anomaly)
    extra = {"point_adjusted_f1": point_adjusted_f1(labels, anomaly)} if point_adjusted else {}
    return {
        "auc_pr": average_precision(labels, score), "vus_pr": vus_pr(labels, score),
        "roc_auc": roc_auc(labels, score),
        "event_precision": ev.precision, "event_recall": ev.recall, "event_f1": ev.f1,
        "segments": ev.segments, "found": ev.found, "alarms": ev.alarms,
        "false_alarms": ev.false_alarms, "mean_delay_s": ev.mean_delay,
        "median_delay_s": ev.median_delay,
        "false_alarms_per_day": false_alarms_per_day(labels, anomaly, ts),
        "point_precision": pp, "point_recall": pr, "point_f1": pf,
        # point-wise precision x event-wise recall: one endless alarm cannot score well
        "composite_f1": _f1(pp, ev.recall),
        "label_rate": float(np.mean(labels != 0)),
        # an alarm that never closes "finds" everything: this share exposes it
        "alarm_time_share": float(np.mean(anomaly != 0)),
        "normal_in_alarm": float(np.mean(anomaly[labels == 0] != 0))
        if np.any(labels == 0) else math.nan,
        **extra,
    }


def evaluate(frame: Frame, score: np.ndarray, anomaly: np.ndarray, mask: np.ndarray,
             early: float = 0.0, late: float = 0.0, point_adjusted: bool = False,
             nab_probation: float = 0.15) -> dict[str, Any]:
    """Per-key metrics on the rows in ``mask``, their macro average (nan-skipping) and
    the NAB score over all keys (alarm starts as detections; ``nab_probation`` 0 when the
    mask already leaves out a training head)."""
    assert frame.labels is not None, "evaluation needs labels"
    order = frame.event_time_order()
    keys = frame.keys[order]
    per_key, series = {}, []
    for key in frame.unique_keys():
        rows = order[(keys == key) & mask[order]]
        if len(rows) == 0:
            continue
        labels = frame.labels[rows]
        per_key[key] = key_metrics(labels, score[rows], anomaly[rows], frame.timestamps[rows],
                                   early, late, point_adjusted)
        series.append(nab.score_series(labels, nab.detections_from_alarms(anomaly[rows]),
                                       nab_probation))
    scores = {NAB_COLUMNS[k]: v for k, v in nab.normalized(series).items()}
    return {"per_key": per_key, "macro": {**macro(per_key), **scores}, "nab": scores}


def macro(per_key: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over keys where it is defined."""
    if not per_key:
        return {}
    names = next(iter(per_key.values())).keys()
    out = {}
    for name in names:
        vals = [m[name] for m in per_key.values() if not _isnan(m[name])]
        out[name] = float(np.mean(vals)) if vals else math.nan
    return out


def run_baselines(names: list[str], train: Frame, frame: Frame, config: Config
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scores and alarm flags per row of ``frame`` for each named baseline.

    Like streamae's models, each baseline learns from the older part of every key's
    training rows and its thresholds start from its scores on the newest part
    (``train.val_fraction``), unseen while it learnt."""
    check_baselines(names)
    older, newest = split_newest(train, config.train.val_fraction)
    results = {}
    for name in names:
        baseline = BASELINES[name]().fit(older if len(older) else train)
        held = baseline.score(newest)
        seeds = {k: held[newest.keys == k] for k in newest.unique_keys()}
        score = baseline.score(frame)
        results[name] = (score, decide(frame, score, config, seeds))
    return results


def check_baselines(names: list[str]) -> None:
    """Fail before any work on a name that is not a baseline, or one whose optional
    package is not installed."""
    import importlib.util

    for name in names:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; available: {', '.join(BASELINES)}")
        needs = BASELINES[name].needs
        if needs and importlib.util.find_spec(needs) is None:
            raise ValueError(f"the {name} baseline needs scikit-learn, which is not installed: "
                             "pip install 'streamae[eval]' (or leave it out of --baselines)")


def split_newest(frame: Frame, fraction: float) -> tuple[Frame, Frame]:
    """Each key's older rows and its newest ``fraction`` of rows (event-time order)."""
    newest = np.zeros(len(frame), dtype=bool)
    order = frame.event_time_order()
    keys = frame.keys[order]
    for key in frame.unique_keys():
        rows = order[keys == key]
        newest[rows[len(rows) - int(len(rows) * fraction):]] = True
    return frame.take(~newest), frame.take(newest)


def decide(frame: Frame, score: np.ndarray, config: Config,
           seeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Alarm flags for a score column, through the same threshold and alarm stages;
    ``seeds``: per key, held-out scores its threshold starts from."""
    order = frame.event_time_order()
    order = order[~np.isnan(score[order])]
    names, slots = np.unique(frame.keys[order].astype(str), return_inverse=True)
    decision = Decision(config.threshold, config.alarm)
    decision.ensure(len(names) or 1)
    if seeds:
        pooled = np.concatenate([v[np.isfinite(v)] for v in seeds.values()])
        decision.seed({i: _finite(seeds.get(k, pooled), pooled) for i, k in enumerate(names)})
    _, alarm = decision.apply(slots.astype(np.int64), frame.timestamps[order].astype(np.float64),
                              score[order])
    flags = np.zeros(len(frame), dtype=np.int8)
    flags[order] = alarm.anomaly
    return flags


def _finite(values: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    values = values[np.isfinite(values)]
    return values if len(values) >= 50 else fallback


def markdown_table(rows: dict[str, dict[str, float]], columns: tuple[str, ...] = HEADLINE) -> str:
    """A metrics table: one line per detector."""
    lines = ["| detector | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(c, math.nan)) for c in columns)
                     + " |")
    return "\n".join(lines)


def _f1(p: float, r: float) -> float:
    if _isnan(p) or _isnan(r):
        return 0.0 if (_isnan(p) and not _isnan(r)) else math.nan
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _fmt(x: float) -> str:
    if _isnan(x):
        return "n/a"
    return f"{x:.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:.3f}"


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)
