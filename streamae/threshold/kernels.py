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
def alarm_batch(slots, ts, scores, thresholds, state, enter, exit_, min_hits, hit_window,
                spans, points, prune, anomaly, event, event_ts, peak, last_hot):
    """Post-processing per key, in order. ``spans``/``points``: amount and unit of
    (min_duration, resolve_after, suppress, update_every, prune_memory).

    Open when ``score >= enter*threshold`` and at least ``min_hits`` of the key's last
    ``hit_window`` points crossed it, held ``min_duration``, not within ``suppress`` of the
    last resolve, and (``prune`` > 0) at a ratio to the threshold of at least ``prune`` x
    the strongest alarm peak of the last ``prune_memory``. While open, an update when the
    peak grows (at most every ``update_every``); resolve after ``score < exit*threshold``
    for ``resolve_after``, so alarms closer than that are one. Writes per point: anomaly
    flag, event code, event time, new-peak flag and the time the key was last in alarm or
    crossed its threshold without one opening (this point's if so; -inf: never)."""
    for i in range(len(slots)):
        alarm_step(i, slots[i], ts[i], scores[i], thresholds[i], state, enter, exit_,
                   min_hits, hit_window, spans, points, prune, anomaly, event, event_ts, peak,
                   last_hot)


@njit(cache=True)
def alarm_step(i, k, t, x, thr, state, enter, exit_, min_hits, hit_window, spans, points,
               prune, anomaly, event, event_ts, peak, last_hot):
    """One point of :func:`alarm_batch`."""
    min_duration, resolve_after, suppress, update_every, prune_memory = (
        spans[0], spans[1], spans[2], spans[3], spans[4])
    ratio = x / thr if thr > 0.0 else (0.0 if x <= 0.0 or np.isnan(thr) else np.inf)
    state[k, A_COUNT] += 1
    n = state[k, A_COUNT]
    crossed = ratio >= enter
    hits = ((int(state[k, A_HITS]) << 1) | (1 if crossed else 0)) & ((1 << hit_window) - 1)
    state[k, A_HITS] = hits
    event[i] = EV_NONE
    event_ts[i] = np.nan
    peak[i] = False
    if state[k, A_ACTIVE] == 0.0:
        if crossed:
            if np.isnan(state[k, A_ABOVE_T]):
                state[k, A_ABOVE_T] = t
                state[k, A_ABOVE_N] = n
            held = _since(t, n, state[k, A_ABOVE_T], state[k, A_ABOVE_N], min_duration,
                          points[0])
            calm = _since(t, n, state[k, A_RESOLVED_T], state[k, A_RESOLVED_N], suppress,
                          points[2])
            strong = state[k, A_STRONG]
            if prune > 0.0 and not np.isnan(strong) and _since(
                    t, n, state[k, A_STRONG_T], state[k, A_STRONG_N], prune_memory, points[4]):
                state[k, A_STRONG] = np.nan
                strong = np.nan
            weak = prune > 0.0 and not np.isnan(strong) and ratio < prune * strong
            if held and calm and not weak and _hits(hits, hit_window) >= min_hits:
                state[k, A_ACTIVE] = 1.0
                state[k, A_OPEN] = state[k, A_ABOVE_T]
                state[k, A_PEAK] = x
                state[k, A_CALM_T] = np.nan
                state[k, A_UPDATED_T] = t
                state[k, A_UPDATED_N] = n
                event[i] = EV_OPEN
                event_ts[i] = state[k, A_OPEN]
                peak[i] = True
        else:
            state[k, A_ABOVE_T] = np.nan
    else:
        if x > state[k, A_PEAK]:
            state[k, A_PEAK] = x
            peak[i] = True
            if _since(t, n, state[k, A_UPDATED_T], state[k, A_UPDATED_N], update_every,
                      points[3]):
                event[i] = EV_UPDATE
                event_ts[i] = t
                state[k, A_UPDATED_T] = t
                state[k, A_UPDATED_N] = n
        if np.isnan(state[k, A_STRONG]) or ratio > state[k, A_STRONG]:
            state[k, A_STRONG] = ratio
        state[k, A_STRONG_T] = t
        state[k, A_STRONG_N] = n
        if ratio < exit_:
            if np.isnan(state[k, A_CALM_T]):
                state[k, A_CALM_T] = t
                state[k, A_CALM_N] = n
            if _since(t, n, state[k, A_CALM_T], state[k, A_CALM_N], resolve_after, points[1]):
                state[k, A_ACTIVE] = 0.0
                state[k, A_RESOLVED_T] = t
                state[k, A_RESOLVED_N] = n
                state[k, A_ABOVE_T] = np.nan
                event[i] = EV_RESOLVE
                event_ts[i] = state[k, A_CALM_T]
        else:
            state[k, A_CALM_T] = np.nan
    anomaly[i] = state[k, A_ACTIVE] != 0.0
    if crossed:
        state[k, A_CROSSED_T] = t
    last = state[k, A_RESOLVED_T]
    if state[k, A_CROSSED_T] > last:  # False while it is nan: never crossed
        last = state[k, A_CROSSED_T]
    last_hot[i] = t if anomaly[i] or crossed else last


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
        alarm_step(i, k, ts[i], scores[i], z, astate, enter, exit_, min_hits, hit_window,
                   spans, points, prune, anomaly, event, event_ts, peak, last_hot)
        tail_learn(k, scores[i], tstate, ring, risk, init_q, every, learn, least, guard,
                   anomaly[i])


def new_alarm_state(keys: int) -> np.ndarray:
    """Fresh alarm state rows: inactive, never resolved, nothing seen."""
    state = np.full((keys, ALARM_COLS), np.nan)
    state[:, A_ACTIVE] = 0.0
    state[:, A_RESOLVED_T] = state[:, A_RESOLVED_N] = -np.inf
    state[:, A_COUNT] = state[:, A_HITS] = 0.0
    return state


# Tail state columns: ring size, ring position, points since the last sample, then the
# fitted tail (n, peaks, t, sum, sum of squares, z) as in SPOT
# ..., and the share of recent points above the threshold (exponentially weighted)
T_SIZE, T_POS, T_SINCE, T_N, T_NT, T_T, T_SUM, T_SQ, T_Z, T_OVER = range(10)
TAIL_COLS = 10
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
    spot_fit(ring[:size].astype(np.float64), risk, init_q, fit)
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
