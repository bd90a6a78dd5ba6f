"""Deliberately naive reference implementations of the threshold and alarm kernels."""

import math

import numpy as np


def spot(slots, scores, keys, n_init, risk, init_q):
    init = {k: [] for k in range(keys)}
    peaks = {k: [] for k in range(keys)}
    n = {k: 0 for k in range(keys)}
    t, z = {}, {}
    out = []
    for k, x in zip(slots, scores):
        if len(init[k]) < n_init:
            out.append(math.nan)
            init[k].append(x)
            if len(init[k]) == n_init:
                t[k] = float(np.quantile(init[k], init_q))
                peaks[k] = [y - t[k] for y in init[k] if y > t[k]]
                n[k] = n_init
                z[k] = level(t[k], n[k], peaks[k], risk)
            continue
        out.append(z[k])
        if x > z[k]:
            continue
        n[k] += 1
        if x > t[k]:  # as in SPOT, the level is refitted when a new peak arrives
            peaks[k].append(x - t[k])
            z[k] = level(t[k], n[k], peaks[k], risk)
    return np.array(out)


def level(t, n, peaks, risk):
    if not peaks:
        return t
    y = np.array(peaks)
    m, v = y.mean(), y.var()
    r = risk * n / len(y)
    if len(y) < 3 or v <= 1e-12 * m * m:
        sigma, gamma = m, 0.0
    else:
        gamma = 0.5 * (1 - m * m / v)
        sigma = 0.5 * m * (m * m / v + 1)
    z = t - sigma * math.log(r) if abs(gamma) < 1e-6 else t + sigma / gamma * (r ** -gamma - 1)
    return max(z, t)


def p2(slots, scores, keys, p, margin, min_points):
    """P-square, written from the paper's description, one key at a time."""
    out = []
    st = {k: {"x": [], "q": None} for k in range(keys)}
    for k, x in zip(slots, scores):
        s = st[k]
        cnt = len(s["x"]) if s["q"] is None else s["n_total"]
        out.append(margin * s["q"][2] if (s["q"] is not None and cnt >= min_points) else math.nan)
        if s["q"] is None:
            s["x"].append(x)
            if len(s["x"]) == 5:
                s["q"] = sorted(s["x"])
                s["n"] = [0.0, 1.0, 2.0, 3.0, 4.0]
                s["d"] = [0.0, 2 * p, 4 * p, 2 + 2 * p, 4.0]
                s["n_total"] = 5
            continue
        q, npos, d = s["q"], s["n"], s["d"]
        if x < q[0]:
            q[0] = x
            c = 0
        elif x >= q[4]:
            q[4] = x
            c = 3
        else:
            c = max(i for i in range(4) if q[i] <= x)
        for i in range(c + 1, 5):
            npos[i] += 1
        for i, inc in enumerate([0, p / 2, p, (1 + p) / 2, 1]):
            d[i] += inc
        for i in (1, 2, 3):
            di = d[i] - npos[i]
            if (di >= 1 and npos[i + 1] - npos[i] > 1) or (di <= -1 and npos[i - 1] - npos[i] < -1):
                sg = 1 if di > 0 else -1
                qp = q[i] + sg / (npos[i + 1] - npos[i - 1]) * (
                    (npos[i] - npos[i - 1] + sg) * (q[i + 1] - q[i]) / (npos[i + 1] - npos[i])
                    + (npos[i + 1] - npos[i] - sg) * (q[i] - q[i - 1]) / (npos[i] - npos[i - 1]))
                q[i] = qp if q[i - 1] < qp < q[i + 1] else q[i] + sg * (q[i + sg] - q[i]) / (npos[i + sg] - npos[i])
                npos[i] += sg
        s["n_total"] += 1
    return np.array(out)


def alarm(slots, ts, scores, thresholds, keys, enter, exit_, min_dur, resolve_after, suppress,
          update_every, min_hits=1, hit_window=1, prune=0.0, prune_memory=math.inf,
          points=(), bases=None):
    """``points``: names of the spans counted in the key's scored points, not seconds;
    ``bases``: each point's typical score, levels measured from it (None: 0)."""
    st = {k: dict(active=False, above=None, calm=None, open=None, peak=0.0, n=0,
                  resolved=-math.inf, updated=None, hits=[], strong=None, strong_at=None)
          for k in range(keys)}
    flags, events = [], []

    def since(s, mark, amount, name):
        now = s["n"] if name in points else s["t"]
        return now - mark[name in points] >= amount

    bases = np.zeros(len(slots)) if bases is None else bases
    for k, t, x, thr, b in zip(slots, ts, scores, thresholds, bases):
        s = st[k]
        s["n"] += 1
        s["t"] = t
        now = (t, s["n"])
        if math.isnan(thr):
            ratio = 0.0
        elif not math.isnan(b) and thr > b:
            ratio = (x - b) / (thr - b)
        else:
            ratio = x / thr if thr > 0 else (math.inf if x > 0 else 0.0)
        s["hits"] = (s["hits"] + [ratio >= enter])[-hit_window:]
        ev = 0
        if not s["active"]:
            if ratio >= enter:
                s["above"] = now if s["above"] is None else s["above"]
                if s["strong"] is not None and since(s, s["strong_at"], prune_memory,
                                                     "prune_memory"):
                    s["strong"] = None
                weak = prune > 0 and s["strong"] is not None and ratio < prune * s["strong"]
                resolved = s["resolved"] if isinstance(s["resolved"], tuple) else \
                    (s["resolved"], s["resolved"])
                if (since(s, s["above"], min_dur, "min_duration")
                        and since(s, resolved, suppress, "suppress") and not weak
                        and sum(s["hits"]) >= min_hits):
                    s.update(active=True, open=s["above"], peak=x, calm=None, updated=now)
                    ev = 1
            else:
                s["above"] = None
        else:
            if x > s["peak"]:
                s["peak"] = x
                if since(s, s["updated"], update_every, "update_every"):
                    ev, s["updated"] = 2, now
            s["strong"] = ratio if s["strong"] is None else max(s["strong"], ratio)
            s["strong_at"] = now
            if ratio < exit_:
                s["calm"] = now if s["calm"] is None else s["calm"]
                if since(s, s["calm"], resolve_after, "resolve_after"):
                    s.update(active=False, resolved=now, above=None)
                    ev = 3
            else:
                s["calm"] = None
        flags.append(s["active"])
        events.append(ev)
    return np.array(flags), np.array(events)


def tail(slots, scores, keys, size, every, least, risk, init_q, learn, guard=0.05):
    """A ring of every ``every``-th learnt score per key (the newest ``size``), its tail
    refitted at each new entry; thresholds nan while fewer than ``least`` are held."""
    mem = {k: [] for k in range(keys)}
    count = {k: 0 for k in range(keys)}
    over = {k: 0.0 for k in range(keys)}  # recent share of points above the threshold
    z = {k: math.nan for k in range(keys)}
    t = {}
    out = []
    for k, x in zip(slots, scores):
        out.append(z[k])
        if not math.isnan(z[k]):
            over[k] += (float(x > z[k]) - over[k]) / (size * every)
            if learn == "capped" and over[k] <= guard:
                x = min(x, z[k])
        count[k] += 1
        if count[k] < every:
            continue
        count[k] = 0
        mem[k] = (mem[k] + [np.float32(x)])[-size:]
        if len(mem[k]) >= least:
            values = np.array(mem[k], dtype=np.float64)
            t[k] = float(np.quantile(values, init_q))
            z[k] = level(t[k], len(values), [y - t[k] for y in values if y > t[k]], risk)
    return np.array(out)
