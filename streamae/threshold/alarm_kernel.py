"""Numba kernel of the alarm stage: per key, threshold crossings in, few alarms out.

It walks a batch of points in order and updates per-key state held in a plain array (so
the state checkpoints as-is).
"""

from __future__ import annotations

import numpy as np
from numba import njit


# Alarm state columns. Marks are kept twice: event time (_T) and the key's count of scored
# points (_N), so every span can be either.
(A_ACTIVE, A_ABOVE_T, A_ABOVE_N, A_CALM_T, A_CALM_N, A_OPEN, A_PEAK, A_RESOLVED_T,
 A_RESOLVED_N, A_UPDATED_T, A_UPDATED_N, A_COUNT, A_HITS, A_STRONG, A_STRONG_T,
 A_STRONG_N, A_CROSSED_T) = range(17)
ALARM_COLS = 17
EV_NONE, EV_OPEN, EV_UPDATE, EV_RESOLVE = 0, 1, 2, 3


@njit(cache=True)
def _since(t, n, mark_t, mark_n, amount, points):
    """Whether ``amount`` (seconds, or points when ``points``) has passed since a mark."""
    if points:
        return n - mark_n >= amount
    return t - mark_t >= amount


@njit(cache=True)
def _hits(mask, window):
    count = 0
    for j in range(window):
        if (mask >> j) & 1:
            count += 1
    return count


@njit(cache=True)
def level_ratio(x, thr, base):
    """How far ``x`` is along the way from the key's typical score ``base`` to its
    threshold (1 at the threshold), so that hysteresis means the same on any score's
    scale; without a base below the threshold, ``x / thr``."""
    if np.isnan(thr):
        return 0.0
    if not np.isnan(base) and thr > base:
        return (x - base) / (thr - base)
    return x / thr if thr > 0.0 else (0.0 if x <= 0.0 else np.inf)


@njit(cache=True)
def alarm_batch(slots, ts, scores, thresholds, bases, state, enter, exit_, min_hits,
                hit_window, spans, points, prune, anomaly, event, event_ts, peak, last_hot):
    """Post-processing per key, in order. ``spans``/``points``: amount and unit of
    (min_duration, resolve_after, suppress, update_every, prune_memory). Levels are
    :func:`level_ratio` of each score between its key's typical score (``bases``) and
    its threshold.

    Open when the level reaches ``enter`` and at least ``min_hits`` of the key's last
    ``hit_window`` points did, held ``min_duration``, not within ``suppress`` of the last
    resolve, and (``prune`` > 0) at a level of at least ``prune`` x the strongest alarm
    peak of the last ``prune_memory``. While open, an update when the peak grows (at most
    every ``update_every``); resolve after the level stays below ``exit`` for
    ``resolve_after``, so alarms closer than that are one. Writes per point: anomaly flag,
    event code, event time, new-peak flag and the time the key was last in alarm or
    crossed its threshold without one opening (this point's if so; -inf: never)."""
    for i in range(len(slots)):
        alarm_step(i, slots[i], ts[i], scores[i], thresholds[i], bases[i], state, enter,
                   exit_, min_hits, hit_window, spans, points, prune, anomaly, event,
                   event_ts, peak, last_hot)


@njit(cache=True)
def alarm_step(i, k, t, x, thr, base, state, enter, exit_, min_hits, hit_window, spans,
               points, prune, anomaly, event, event_ts, peak, last_hot):
    """One point of :func:`alarm_batch`."""
    ratio = level_ratio(x, thr, base)
    state[k, A_COUNT] += 1
    n = state[k, A_COUNT]
    crossed = ratio >= enter
    hits = ((int(state[k, A_HITS]) << 1) | (1 if crossed else 0)) & ((1 << hit_window) - 1)
    state[k, A_HITS] = hits
    if state[k, A_ACTIVE] == 0.0:
        code, when, new_peak = EV_NONE, np.nan, False
        if not crossed:
            state[k, A_ABOVE_T] = np.nan
        elif _opens(k, t, n, ratio, _hits(hits, hit_window) >= min_hits, state, spans,
                    points, prune):
            state[k, A_ACTIVE] = 1.0
            state[k, A_OPEN] = state[k, A_ABOVE_T]
            state[k, A_PEAK] = x
            state[k, A_CALM_T] = np.nan
            state[k, A_UPDATED_T] = t
            state[k, A_UPDATED_N] = n
            code, when, new_peak = EV_OPEN, state[k, A_OPEN], True
    else:
        code, when, new_peak = _while_open(k, t, n, x, ratio, state, exit_, spans, points)
    event[i], event_ts[i], peak[i] = code, when, new_peak
    anomaly[i] = state[k, A_ACTIVE] != 0.0
    if crossed:
        state[k, A_CROSSED_T] = t
    last = state[k, A_RESOLVED_T]
    if state[k, A_CROSSED_T] > last:  # False while it is nan: never crossed
        last = state[k, A_CROSSED_T]
    last_hot[i] = t if anomaly[i] or crossed else last


@njit(cache=True)
def _opens(k, t, n, ratio, enough_hits, state, spans, points, prune):
    """Whether a crossing on an idle key opens an alarm: above the enter level for
    ``min_duration``, past ``suppress`` since the last resolve, enough hits, and not weak
    beside the key's strongest recent peak (``prune``)."""
    if np.isnan(state[k, A_ABOVE_T]):
        state[k, A_ABOVE_T] = t
        state[k, A_ABOVE_N] = n
    held = _since(t, n, state[k, A_ABOVE_T], state[k, A_ABOVE_N], spans[0], points[0])
    calm = _since(t, n, state[k, A_RESOLVED_T], state[k, A_RESOLVED_N], spans[2], points[2])
    strong = state[k, A_STRONG]
    if prune > 0.0 and not np.isnan(strong) and _since(
            t, n, state[k, A_STRONG_T], state[k, A_STRONG_N], spans[4], points[4]):
        state[k, A_STRONG] = np.nan
        strong = np.nan
    weak = prune > 0.0 and not np.isnan(strong) and ratio < prune * strong
    return held and calm and not weak and enough_hits


@njit(cache=True)
def _while_open(k, t, n, x, ratio, state, exit_, spans, points):
    """One point of an open alarm: (event code, event time, new peak). An update when the
    peak grows (at most every ``update_every``), a resolve after ``resolve_after`` calm."""
    code, when, new_peak = EV_NONE, np.nan, False
    if x > state[k, A_PEAK]:
        state[k, A_PEAK] = x
        new_peak = True
        if _since(t, n, state[k, A_UPDATED_T], state[k, A_UPDATED_N], spans[3], points[3]):
            code, when = EV_UPDATE, t
            state[k, A_UPDATED_T] = t
            state[k, A_UPDATED_N] = n
    if np.isnan(state[k, A_STRONG]) or ratio > state[k, A_STRONG]:
        state[k, A_STRONG] = ratio
    state[k, A_STRONG_T] = t
    state[k, A_STRONG_N] = n
    if ratio >= exit_:
        state[k, A_CALM_T] = np.nan
        return code, when, new_peak
    if np.isnan(state[k, A_CALM_T]):
        state[k, A_CALM_T] = t
        state[k, A_CALM_N] = n
    if _since(t, n, state[k, A_CALM_T], state[k, A_CALM_N], spans[1], points[1]):
        state[k, A_ACTIVE] = 0.0
        state[k, A_RESOLVED_T] = t
        state[k, A_RESOLVED_N] = n
        state[k, A_ABOVE_T] = np.nan
        code, when = EV_RESOLVE, state[k, A_CALM_T]
    return code, when, new_peak


def new_alarm_state(keys: int) -> np.ndarray:
    """Fresh alarm state rows: inactive, never resolved, nothing seen."""
    state = np.full((keys, ALARM_COLS), np.nan)
    state[:, A_ACTIVE] = 0.0
    state[:, A_RESOLVED_T] = state[:, A_RESOLVED_N] = -np.inf
    state[:, A_COUNT] = state[:, A_HITS] = 0.0
    return state
