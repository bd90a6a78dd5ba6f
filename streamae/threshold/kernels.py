"""Numba kernels for streaming per-key thresholds: SPOT (peaks over threshold) and the
P-square streaming quantile.

Each kernel walks a batch of scored points in order and updates per-key state held in
plain arrays (so the state checkpoints as-is). A point is judged against the threshold
learnt from its past only, then learnt from.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


# SPOT state columns: seen, n, peaks, init threshold t, sum of excesses, sum of squares, z
S_SEEN, S_N, S_NT, S_T, S_SUM, S_SQ, S_Z = range(7)
SPOT_COLS = 7


@njit(cache=True)
def spot_level(t, n, nt, s, sq, risk):
    """Threshold z for risk ``risk`` from a GPD tail fitted by the method of moments to
    ``nt`` excesses over ``t`` among ``n`` observations (sum ``s``, sum of squares ``sq``)."""
    if nt < 1:
        return t
    m = s / nt
    v = sq / nt - m * m
    r = risk * n / nt
    if nt < 3 or v <= 1e-12 * m * m:
        sigma, gamma = m, 0.0  # too few peaks for a shape: exponential tail
    else:
        gamma = 0.5 * (1.0 - m * m / v)
        sigma = 0.5 * m * (m * m / v + 1.0)
    if abs(gamma) < 1e-6:
        z = t - sigma * math.log(r)
    else:
        z = t + sigma / gamma * (r ** (-gamma) - 1.0)
    return max(z, t)


@njit(cache=True)
def spot_fit(sample, risk, init_q, row):
    """Calibrate one key's SPOT state ``row`` on a sample of its scores at once: ``t`` at
    their ``init_q`` quantile, the tail fitted to the excesses over it. ``S_SEEN`` is left
    to the caller."""
    n = len(sample)
    pos = init_q * (n - 1)
    lo = int(math.floor(pos))
    part = np.partition(sample, lo)  # the lo-th smallest in place, linear time
    below = part[lo]
    above = below
    if lo + 1 < n:
        above = part[lo + 1]
        for j in range(lo + 2, n):
            if part[j] < above:
                above = part[j]
    t = below + (above - below) * (pos - lo)
    nt, s, sq = 0, 0.0, 0.0
    for y in part:
        if y > t:
            nt += 1
            s += y - t
            sq += (y - t) * (y - t)
    row[S_N] = n
    row[S_NT] = nt
    row[S_T] = t
    row[S_SUM] = s
    row[S_SQ] = sq
    row[S_Z] = spot_level(t, n, nt, s, sq, risk)


@njit(cache=True)
def spot_batch(slots, scores, state, init_buf, risk, init_q, out):
    """Peaks-over-threshold (SPOT): out[i] is the threshold point i is judged against (nan
    while the key calibrates on its first ``init_buf.shape[1]`` scores)."""
    n_init = init_buf.shape[1]
    for i in range(len(slots)):
        k = slots[i]
        x = scores[i]
        seen = int(state[k, S_SEEN])
        if seen < n_init:
            out[i] = np.nan
            init_buf[k, seen] = x
            state[k, S_SEEN] = seen + 1
            if seen + 1 == n_init:
                spot_fit(init_buf[k], risk, init_q, state[k])
            continue
        z = state[k, S_Z]
        out[i] = z
        if x > z:
            continue  # an anomaly: kept out of the tail model
        state[k, S_N] += 1
        t = state[k, S_T]
        if x > t:
            y = x - t
            state[k, S_NT] += 1
            state[k, S_SUM] += y
            state[k, S_SQ] += y * y
            state[k, S_Z] = spot_level(t, state[k, S_N], state[k, S_NT], state[k, S_SUM],
                                       state[k, S_SQ], risk)


# P2 quantile state columns: count, 5 marker heights, 5 positions, 5 desired positions
P_COUNT, P_Q, P_N, P_D = 0, 1, 6, 11
P2_COLS = 16


@njit(cache=True)
def p2_batch(slots, scores, state, p, margin, min_points, out):
    """Streaming quantile by the P-square algorithm (five markers per key); out[i] is
    ``margin`` times the estimate before point i (nan until ``min_points`` seen)."""
    dn = np.array([0.0, p / 2.0, p, (1.0 + p) / 2.0, 1.0])
    for i in range(len(slots)):
        k = slots[i]
        x = scores[i]
        cnt = int(state[k, P_COUNT])
        out[i] = margin * state[k, P_Q + 2] if cnt >= min_points else np.nan
        if cnt < 5:
            state[k, P_Q + cnt] = x
            state[k, P_COUNT] = cnt + 1
            if cnt + 1 == 5:
                state[k, P_Q:P_Q + 5] = np.sort(state[k, P_Q:P_Q + 5])
                for j in range(5):
                    state[k, P_N + j] = j
                state[k, P_D + 0] = 0.0
                state[k, P_D + 1] = 2.0 * p
                state[k, P_D + 2] = 4.0 * p
                state[k, P_D + 3] = 2.0 + 2.0 * p
                state[k, P_D + 4] = 4.0
            continue
        q = state[k, P_Q:P_Q + 5]
        npos = state[k, P_N:P_N + 5]
        if x < q[0]:
            q[0] = x
            cell = 0
        elif x >= q[4]:
            q[4] = x
            cell = 3
        else:
            cell = 0
            while cell < 3 and x >= q[cell + 1]:
                cell += 1
        for j in range(cell + 1, 5):
            npos[j] += 1.0
        for j in range(5):
            state[k, P_D + j] += dn[j]
        for j in range(1, 4):
            d = state[k, P_D + j] - npos[j]
            if (d >= 1.0 and npos[j + 1] - npos[j] > 1.0) or (d <= -1.0 and npos[j - 1] - npos[j] < -1.0):
                step = 1.0 if d > 0 else -1.0
                qp = q[j] + step / (npos[j + 1] - npos[j - 1]) * (
                    (npos[j] - npos[j - 1] + step) * (q[j + 1] - q[j]) / (npos[j + 1] - npos[j])
                    + (npos[j + 1] - npos[j] - step) * (q[j] - q[j - 1]) / (npos[j] - npos[j - 1]))
                if q[j - 1] < qp < q[j + 1]:
                    q[j] = qp
                else:
                    o = j + int(step)
                    q[j] = q[j] + step * (q[o] - q[j]) / (npos[o] - npos[j])
                npos[j] += step
        state[k, P_COUNT] = cnt + 1
