"""Numba kernels of the tail threshold: per key, a ring of recent scores with a
generalised Pareto tail fitted above a quantile of them; and the tail threshold and the
alarm stage run point by point together.

A point is judged against the threshold learnt from its past only, then learnt from.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from streamae.threshold.alarm_kernel import alarm_step
from streamae.threshold.kernels import S_N, S_NT, S_SQ, S_SUM, S_T, S_Z, SPOT_COLS, spot_fit

# Tail state columns: ring size, ring position, points since the last sample, then the
# fitted tail (n, peaks, t, sum, sum of squares, z) as in SPOT, the share of recent points
# above the threshold (exponentially weighted), and the median of the remembered scores
# (the key's typical score, the base of the alarm levels)
T_SIZE, T_POS, T_SINCE, T_N, T_NT, T_T, T_SUM, T_SQ, T_Z, T_OVER, T_MED = range(11)
TAIL_COLS = 11
LEARN_ALL, LEARN_CAPPED, LEARN_CALM = 0, 1, 2


@njit(cache=True)
def tail_fit(ring, row, risk, init_q, least):
    """Fit row's tail to the first ``row[T_SIZE]`` values of ``ring`` (z: nan while it
    holds fewer than ``least``)."""
    size = int(row[T_SIZE])
    if size < max(least, 1):
        row[T_Z] = np.nan
        return
    fit = np.zeros(SPOT_COLS)
    sample = ring[:size].astype(np.float64)
    row[T_MED] = np.median(sample)
    spot_fit(sample, risk, init_q, fit)
    row[T_N] = fit[S_N]
    row[T_NT] = fit[S_NT]
    row[T_T] = fit[S_T]
    row[T_SUM] = fit[S_SUM]
    row[T_SQ] = fit[S_SQ]
    row[T_Z] = fit[S_Z]


@njit(cache=True)
def tail_probability(x, ring, row):
    """P(a score of the key's recent normal >= x): the fitted GPD above the tail start,
    the share of remembered scores at or above x below it (nan without any)."""
    size = int(row[T_SIZE])
    if size == 0 or np.isnan(x):
        return np.nan
    t = row[T_T]
    nt = row[T_NT]
    if x > t and nt >= 1:
        m = row[T_SUM] / nt
        v = row[T_SQ] / nt - m * m
        y = x - t
        if nt < 3 or v <= 1e-12 * m * m:
            sf = math.exp(-y / max(m, 1e-12))
        else:
            gamma = 0.5 * (1.0 - m * m / v)
            sigma = 0.5 * m * (m * m / v + 1.0)
            base = 1.0 + gamma * y / sigma
            sf = 0.0 if base <= 0.0 else base ** (-1.0 / gamma) if abs(gamma) > 1e-6 \
                else math.exp(-y / sigma)
        return nt / row[T_N] * sf
    count = 0
    for j in range(size):
        if ring[j] >= x:
            count += 1
    return max(count, 1) / size


@njit(cache=True)
def tail_batch(slots, scores, state, ring, risk, init_q, every, learn, least, guard, out_thr,
               out_p):
    """Per point: the threshold it is judged against (the key's level exceeded with
    probability ``risk``) and its tail probability; then the point is learnt
    (:func:`tail_learn`; outside alarms only is :func:`tail_alarm_batch`'s)."""
    for i in range(len(slots)):
        k = slots[i]
        out_thr[i] = state[k, T_Z]
        out_p[i] = tail_probability(scores[i], ring[k], state[k])
        tail_learn(k, scores[i], state, ring, risk, init_q, every, learn, least, guard, False)


@njit(cache=True)
def tail_learn(k, x, state, ring, risk, init_q, every, learn, least, guard, in_alarm):
    """Learn one point of key ``k``: every ``every``-th enters its ring and the tail is
    fitted again. ``LEARN_ALL``: as it is. ``LEARN_CAPPED``: capped at the threshold while
    the threshold is crossed on at most ``guard`` of recent points (exponentially
    weighted over the memory): beyond that it no longer describes the key, and points
    enter as they are until it does. ``LEARN_CALM``: capped, and nothing from inside an
    alarm."""
    if np.isnan(x):
        return
    z = state[k, T_Z]
    cap = ring.shape[1]
    if not np.isnan(z):
        over = 1.0 if x > z else 0.0
        state[k, T_OVER] += (over - state[k, T_OVER]) / (cap * every)
        if learn == LEARN_CALM and in_alarm:
            return
        if learn != LEARN_ALL and not (learn == LEARN_CAPPED and state[k, T_OVER] > guard):
            x = min(x, z)
    state[k, T_SINCE] += 1
    if state[k, T_SINCE] < every:
        return
    state[k, T_SINCE] = 0
    pos = int(state[k, T_POS])
    ring[k, pos] = x
    state[k, T_POS] = (pos + 1) % cap
    state[k, T_SIZE] = min(state[k, T_SIZE] + 1, cap)
    tail_fit(ring[k], state[k], risk, init_q, least)


@njit(cache=True)
def tail_seed(values, every, limit, ring_row, row, risk, init_q, least):
    """Restart one key's memory from ``values`` (oldest first): its newest, one per
    ``every``, at most ``limit`` of them."""
    n = len(values)
    take = min(limit, (n + every - 1) // every)
    cap = len(ring_row)
    for j in range(take):
        ring_row[take - 1 - j] = values[n - 1 - j * every]
    row[T_SIZE] = take
    row[T_POS] = take % cap
    row[T_SINCE] = 0
    tail_fit(ring_row, row, risk, init_q, least)


@njit(cache=True)
def tail_alarm_batch(slots, ts, scores, tstate, ring, risk, init_q, every, learn, least,
                     guard, astate, enter, exit_, min_hits, hit_window, spans, points, prune,
                     out_thr, anomaly, event, event_ts, peak, last_hot):
    """:func:`tail_batch` and :func:`alarm_batch` point by point, so that what a key's
    memory learns can depend on whether the point is inside an alarm (``LEARN_CALM``)."""
    for i in range(len(slots)):
        k = slots[i]
        z = tstate[k, T_Z]
        out_thr[i] = z
        alarm_step(i, k, ts[i], scores[i], z, tstate[k, T_MED], astate, enter, exit_,
                   min_hits, hit_window, spans, points, prune, anomaly, event, event_ts,
                   peak, last_hot)
        tail_learn(k, scores[i], tstate, ring, risk, init_q, every, learn, least, guard,
                   anomaly[i])
