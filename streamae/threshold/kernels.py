"""Numba kernels for streaming per-key thresholds and alarms.

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
def _quantile_sorted(x, q):
    """Linear-interpolated quantile of a sorted array (numpy's default method)."""
    pos = q * (len(x) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(x) - 1)
    return x[lo] + (x[hi] - x[lo]) * (pos - lo)


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
    srt = np.sort(sample)
    t = _quantile_sorted(srt, init_q)
    nt, s, sq = 0, 0.0, 0.0
    for y in srt:
        if y > t:
            nt += 1
            s += y - t
            sq += (y - t) * (y - t)
    row[S_N] = len(srt)
    row[S_NT] = nt
    row[S_T] = t
    row[S_SUM] = s
    row[S_SQ] = sq
    row[S_Z] = spot_level(t, len(srt), nt, s, sq, risk)


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


# Alarm state columns
A_ACTIVE, A_ABOVE, A_CALM, A_OPEN, A_PEAK, A_RESOLVED, A_UPDATED = range(7)
ALARM_COLS = 7
EV_NONE, EV_OPEN, EV_UPDATE, EV_RESOLVE = 0, 1, 2, 3


@njit(cache=True)
def alarm_batch(slots, ts, scores, thresholds, state, enter, exit_, min_duration, resolve_after,
                suppress, update_every, anomaly, event, event_ts, peak, last_alarm):
    """Hysteresis: open after ``score >= enter*threshold`` held ``min_duration`` (and not
    within ``suppress`` of the last resolve); while open, an update when the peak grows (at
    most every ``update_every``); resolve after ``score < exit*threshold`` for
    ``resolve_after``. Writes per point: anomaly flag, event code, event time, new-peak flag,
    and the time the key was last in alarm (this point's if it is; -inf: never)."""
    for i in range(len(slots)):
        k = slots[i]
        t = ts[i]
        x = scores[i]
        thr = thresholds[i]
        ratio = x / thr if thr > 0.0 else (0.0 if x <= 0.0 or np.isnan(thr) else np.inf)
        event[i] = EV_NONE
        event_ts[i] = np.nan
        peak[i] = False
        if state[k, A_ACTIVE] == 0.0:
            if ratio >= enter:
                if np.isnan(state[k, A_ABOVE]):
                    state[k, A_ABOVE] = t
                if t - state[k, A_ABOVE] >= min_duration and t - state[k, A_RESOLVED] >= suppress:
                    state[k, A_ACTIVE] = 1.0
                    state[k, A_OPEN] = state[k, A_ABOVE]
                    state[k, A_PEAK] = x
                    state[k, A_CALM] = np.nan
                    state[k, A_UPDATED] = t
                    event[i] = EV_OPEN
                    event_ts[i] = state[k, A_OPEN]
                    peak[i] = True
            else:
                state[k, A_ABOVE] = np.nan
        else:
            if x > state[k, A_PEAK]:
                state[k, A_PEAK] = x
                peak[i] = True
                if t - state[k, A_UPDATED] >= update_every:
                    event[i] = EV_UPDATE
                    event_ts[i] = t
                    state[k, A_UPDATED] = t
            if ratio < exit_:
                if np.isnan(state[k, A_CALM]):
                    state[k, A_CALM] = t
                if t - state[k, A_CALM] >= resolve_after:
                    state[k, A_ACTIVE] = 0.0
                    state[k, A_RESOLVED] = t
                    state[k, A_ABOVE] = np.nan
                    event[i] = EV_RESOLVE
                    event_ts[i] = state[k, A_CALM]
            else:
                state[k, A_CALM] = np.nan
        anomaly[i] = state[k, A_ACTIVE] != 0.0
        last_alarm[i] = t if anomaly[i] else state[k, A_RESOLVED]


def new_alarm_state(keys: int) -> np.ndarray:
    """Fresh alarm state rows: inactive, never resolved."""
    state = np.full((keys, ALARM_COLS), np.nan)
    state[:, A_ACTIVE] = 0.0
    state[:, A_RESOLVED] = -np.inf
    return state
