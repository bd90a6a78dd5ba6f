"""Numba kernels of the tail threshold: per key, a ring of recent scores (and the same
scores kept in ascending order, so a refit reads its quantiles instead of searching for
them) with a generalised Pareto tail fitted above a quantile of them; and the tail
threshold and the alarm stage run point by point together.

A point is judged against the threshold learnt from its past only, then learnt from.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from streamae.threshold.alarm_kernel import alarm_step
from streamae.threshold.kernels import spot_level

# Tail state columns: ring size, ring position, points since the last sample, then the
# fitted tail (n, peaks, t, sum, sum of squares, z) as in SPOT (a young memory's pooled
# with the held-out fit's, see tail_fit), the share of recent points above the threshold
# (exponentially weighted), the median of the remembered scores (the key's typical score,
# the base of the alarm levels), the level points are capped at
# while the key is over its threshold or in an alarm (nan: not), and the lowest threshold
# its held-out training scores allow (nan: none) with that fit's (n, peaks, t, sum, sum of
# squares), laid out as the recent fit's; and where a key that re-learnt (crossing its
# threshold too often) is now, the base of its alarm levels until the memory's median
# catches up (nan: none; see _follow); and how many of the remembered scores are a
# restart's, which the key's own next ones replace first (see tail_seed); and how far
# above its median, in upper-quartile spreads, its threshold may be (nan: no bound) and
# how far above it may always be (the held-out spread's worth; see _bound)
(T_SIZE, T_POS, T_SINCE, T_N, T_NT, T_T, T_SUM, T_SQ, T_Z, T_OVER, T_MED, T_CAP,
 T_FLOOR, F_N, F_NT, F_T, F_SUM, F_SQ, T_NOW, T_LENT, T_SHAPE, T_REACH) = range(22)
TAIL_COLS = 22
LEARN_ALL, LEARN_CAPPED, LEARN_CALM = 0, 1, 2


@njit(cache=True)
def tail_fit(ordered, row, risk, init_q, least, prior):
    """Fit row's tail to the first ``row[T_SIZE]`` values of ``ordered`` (the key's
    remembered scores, ascending), as :func:`~streamae.threshold.kernels.spot_fit` would,
    and their median. While it holds fewer than ``least``, z is the held-out floor (nan
    without one): a key seeded from a short training history keeps a threshold from all
    of its held-out scores until it has remembered enough of its own.

    A young memory's tail rests on one or two peaks, and the threshold extrapolates
    from them far beyond its data (risk x memory << 1), so one new score can lift it
    several-fold. A key with a held-out fit therefore pools its peaks with that fit's:
    ``prior`` peaks' worth of them (their mean and mean square, and as many scores as
    the held-out fit had per peak) while its memory is empty, falling to none as it
    fills."""
    n = int(row[T_SIZE])
    if n < max(least, 1):
        row[T_Z] = row[T_FLOOR]
        return
    pos = init_q * (n - 1)
    lo = int(math.floor(pos))
    below = float(ordered[lo])
    above = float(ordered[lo + 1]) if lo + 1 < n else below
    t = below + (above - below) * (pos - lo)
    nt, total, sq = 0, 0.0, 0.0
    for j in range(lo + 1, n):  # nothing at or below lo is above t
        y = float(ordered[j]) - t
        if y > 0.0:
            nt += 1
            total += y
            sq += y * y
    n_eff, nt_eff = float(n), float(nt)
    weight = prior * (1.0 - n / len(ordered))
    if weight > 0.0 and row[F_NT] >= 1.0 and not np.isnan(row[T_FLOOR]):
        n_eff += weight * row[F_N] / row[F_NT]
        nt_eff += weight
        total += weight * row[F_SUM] / row[F_NT]
        sq += weight * row[F_SQ] / row[F_NT]
    row[T_N] = n_eff
    row[T_NT] = nt_eff
    row[T_T] = t
    row[T_SUM] = total
    row[T_SQ] = sq
    z = spot_level(t, n_eff, nt_eff, total, sq, risk)
    row[T_Z] = z if not (row[T_FLOOR] > z) else row[T_FLOOR]
    row[T_MED] = 0.5 * (float(ordered[(n - 1) // 2]) + float(ordered[n // 2]))


@njit(cache=True)
def _bound(row, ring):
    """Hold the threshold to the key's shape bound (nan: none), measured on the newest
    quarter of its memory: a memory whose top holds incidents capped at a threshold some
    change lifted would hold it up (peaks at the cap fit a tail at the cap, at any
    level), while the bulk of its newest scores, which incidents barely move, says where
    its normal is now. Never below the held-out floor, nor nearer the median than the
    held-out spread allows (a memory of near-equal scores has no spread to measure), nor
    while the key re-learns (see :func:`tail_learn`): it is then taking a new normal's
    tail as it is, which the bulk of its scores does not describe yet."""
    size = int(row[T_SIZE])
    if not (row[T_SHAPE] >= 0.0) or size < 8:
        return
    m = max(size // 4, 8)
    newest = np.sort(_newest(ring, int(row[T_POS]), size, m))
    med = _quantile(newest, m, 0.5)
    top = med + max(row[T_SHAPE] * (_quantile(newest, m, 0.75) - med), row[T_REACH])
    if row[T_Z] > top and not (row[T_FLOOR] > top):
        row[T_Z] = top


@njit(cache=True)
def _quantile(ordered, n, q):
    """The ``q`` quantile of the ascending first ``n`` values of ``ordered``."""
    pos = q * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return float(ordered[lo]) + (float(ordered[hi]) - float(ordered[lo])) * (pos - lo)


@njit(cache=True)
def tail_probability(x, ordered, row, fit=T_N):
    """P(a score of the key's recent normal >= x): the fitted GPD above the tail start,
    the share of remembered scores at or above x below it (nan without any). ``fit``:
    the column of the fit to use (``F_N``: the held-out floor's)."""
    size = int(row[T_SIZE])
    if size == 0 or np.isnan(x):
        return np.nan
    t = row[fit + 2]
    nt = row[fit + 1]
    if x > t and nt >= 1:
        m = row[fit + 3] / nt
        v = row[fit + 4] / nt - m * m
        y = x - t
        if nt < 3 or v <= 1e-12 * m * m:
            sf = math.exp(-y / max(m, 1e-12))
        else:
            gamma = 0.5 * (1.0 - m * m / v)
            sigma = 0.5 * m * (m * m / v + 1.0)
            base = 1.0 + gamma * y / sigma
            sf = 0.0 if base <= 0.0 else base ** (-1.0 / gamma) if abs(gamma) > 1e-6 \
                else math.exp(-y / sigma)
        return nt / row[fit] * sf
    count = size - np.searchsorted(ordered[:size], x)
    share = max(count, 1) / size
    return share if fit == T_N else max(share, nt / row[fit])


@njit(cache=True)
def _insert(ordered, n, x):
    """Insert ``x`` into the ascending first ``n`` values of ``ordered``."""
    j = np.searchsorted(ordered[:n], x)
    for i in range(n, j, -1):
        ordered[i] = ordered[i - 1]
    ordered[j] = x


@njit(cache=True)
def _remove(ordered, n, x):
    """Remove one ``x`` from the ascending first ``n`` values of ``ordered``."""
    j = np.searchsorted(ordered[:n], x)
    for i in range(j, n - 1):
        ordered[i] = ordered[i + 1]


@njit(cache=True)
def tail_batch(slots, scores, state, ring, ordered, risk, init_q, every, learn, least, prior,
               guard, out_thr, out_p):
    """Per point: the threshold it is judged against (the key's level exceeded with
    probability ``risk``) and its tail probability; then the point is learnt
    (:func:`tail_learn`; outside alarms only is :func:`tail_alarm_batch`'s)."""
    for i in range(len(slots)):
        k = slots[i]
        z = state[k, T_Z]
        out_thr[i] = z
        # where the floor holds, the held-out tail sets the threshold: its probability
        fit = F_N if z == state[k, T_FLOOR] else T_N
        out_p[i] = tail_probability(scores[i], ordered[k], state[k], fit)
        tail_learn(k, scores[i], state, ring, ordered, risk, init_q, every, learn, least,
                   prior, guard, False)


@njit(cache=True)
def tail_learn(k, x, state, ring, ordered, risk, init_q, every, learn, least, prior, guard,
               in_alarm):
    """Learn one point of key ``k``: every ``every``-th enters its ring (and, in order,
    ``ordered``; the value it replaces leaves both) and the tail is fitted again.
    ``LEARN_ALL``: as it is. ``LEARN_CAPPED``: capped at the threshold while the
    threshold is crossed on at most ``guard`` of recent points (exponentially
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
        # an episode over the threshold (or in an alarm) is capped at the threshold it
        # began with: a threshold refitted on capped points must not lift the cap it caps
        # the rest of the episode at (that ratchet took one burst's threshold 100-fold)
        if over or in_alarm:
            if np.isnan(state[k, T_CAP]):
                state[k, T_CAP] = z
        else:
            state[k, T_CAP] = np.nan
        level = z if np.isnan(state[k, T_CAP]) else state[k, T_CAP]
        if learn == LEARN_CALM and in_alarm:
            return
        if learn != LEARN_ALL and not (learn == LEARN_CAPPED and state[k, T_OVER] > guard):
            x = min(x, level)
    state[k, T_SINCE] += 1
    if state[k, T_SINCE] < every:
        return
    state[k, T_SINCE] = 0
    pos = int(state[k, T_POS])
    size = int(state[k, T_SIZE])
    value = np.float32(x)
    if size == cap or state[k, T_LENT] > 0:  # the oldest (or a restart's) makes room
        _remove(ordered[k], size, ring[k, pos])
        size -= 1
        state[k, T_LENT] = max(state[k, T_LENT] - 1, 0.0)
    _insert(ordered[k], size, value)
    ring[k, pos] = value
    state[k, T_POS] = (pos + 1) % cap
    state[k, T_SIZE] = size + 1
    tail_fit(ordered[k], state[k], risk, init_q, least, prior)
    if not state[k, T_OVER] > guard:  # a key re-learning is learning a new normal's tail
        _bound(state[k], ring[k])
    if learn == LEARN_CAPPED and (state[k, T_OVER] > guard or not np.isnan(state[k, T_NOW])):
        _follow(state[k], ring[k], least, state[k, T_OVER] > guard)


@njit(cache=True)
def _follow(row, ring, least, relearning):
    """Where a key that re-learnt is now: while it re-learns, the median of its newest
    ``least`` remembered scores; after, never above that (a key back at its old level
    follows it down, an incident does not lift it), until the memory's median has caught
    up with it."""
    now = np.median(_newest(ring, int(row[T_POS]), int(row[T_SIZE]), least))
    row[T_NOW] = now if relearning else min(row[T_NOW], now)
    if row[T_NOW] <= row[T_MED]:
        row[T_NOW] = np.nan


@njit(cache=True)
def _newest(ring, pos, size, count):
    """The newest ``count`` of a ring's ``size`` values (the next write at ``pos``)."""
    m = min(count, size)
    newest = np.empty(m)
    for j in range(m):  # the ring's first size slots, newest at pos - 1 (see tail_seed)
        newest[j] = ring[(pos - 1 - j) % size]
    return newest


@njit(cache=True)
def tail_seed(values, every, limit, ring_row, ordered_row, row, risk, init_q, least, prior,
              floor, lent, bound):
    """Restart one key's memory from ``values`` (oldest first): its newest, one per
    ``every``, at most ``limit`` of them. ``floor``: the threshold is never below the one
    fitted to all of ``values`` (a few of them say little of a rare tail). ``lent``: they
    stand in until the key has scores of its own: each one it learns replaces the oldest
    of them, so a restart weighs as much as the points it came from and is gone once as
    many have followed (not kept as long as the memory is). With ``floor``, ``bound`` > 0
    also sets the key's shape bound (see :func:`_bound`): ``bound`` times as many
    upper-quartile spreads above the median as the threshold of all of ``values`` is
    (without ``floor`` the key keeps the bound it had)."""
    row[T_FLOOR] = row[T_NOW] = np.nan
    if floor and len(values) >= least:
        whole = np.sort(values.astype(np.float32))
        probe = np.zeros_like(row)
        probe[:] = np.nan
        probe[T_SIZE] = len(whole)
        tail_fit(whole, probe, risk, init_q, least, 0.0)
        row[T_FLOOR] = probe[T_Z]
        row[F_N:F_SQ + 1] = probe[T_N:T_SQ + 1]
        spread = _quantile(whole, len(whole), 0.75) - probe[T_MED]
        row[T_SHAPE] = row[T_REACH] = np.nan
        if bound > 0.0 and spread > 0.0:
            row[T_REACH] = bound * max(probe[T_Z] - probe[T_MED], 0.0)
            row[T_SHAPE] = row[T_REACH] / spread
    n = len(values)
    take = min(limit, (n + every - 1) // every)
    cap = len(ring_row)
    for j in range(take):
        ring_row[take - 1 - j] = values[n - 1 - j * every]
    ordered_row[:take] = np.sort(ring_row[:take])
    row[T_SIZE] = take
    row[T_POS] = 0 if lent else take % cap
    row[T_LENT] = take if lent else 0
    row[T_SINCE] = 0
    tail_fit(ordered_row, row, risk, init_q, least, prior)
    _bound(row, ring_row)


@njit(cache=True)
def tail_alarm_batch(slots, ts, scores, tstate, ring, ordered, risk, init_q, every, learn,
                     least, prior, guard, astate, enter, exit_, min_hits, hit_window, spans, points,
                     prune, out_thr, anomaly, event, event_ts, peak, last_hot):
    """:func:`tail_batch` and :func:`alarm_batch` point by point, so that what a key's
    memory learns can depend on whether the point is inside an alarm (``LEARN_CALM``)."""
    for i in range(len(slots)):
        k = slots[i]
        z = tstate[k, T_Z]
        out_thr[i] = z
        # a key re-learning has moved: its alarm levels count from where it is now
        base = tstate[k, T_MED]
        if tstate[k, T_NOW] > base:  # False while it is nan
            base = tstate[k, T_NOW]
        alarm_step(i, k, ts[i], scores[i], z, base, astate, enter, exit_,
                   min_hits, hit_window, spans, points, prune, anomaly, event, event_ts,
                   peak, last_hot)
        tail_learn(k, scores[i], tstate, ring, ordered, risk, init_q, every, learn, least,
                   prior, guard, anomaly[i])
