"""Per-key sliding windows in ring buffers, with a defined policy for imperfect points.

Each key owns a ring of the last W scaled points. A window closes every ``hop`` accepted
points once the key has W points, and resolves every point of the key not resolved
before: the newest ``hop`` in steady state, all W for the first window of a segment (the
pipeline scores a window's newest ``hop``; the older points of a first window are its
warm-up).

Point policy (each decision counted, see :data:`STATUS_NAMES`):

* non-finite channel value: ``ffill`` carries the channel's last finite (scaled) value
  forward (0, the training mean, before any), or ``drop`` discards the point;
* timestamp older than the key's newest point (out-of-order or late): dropped;
* timestamp equal to the key's newest point: dropped (``drop``) or appended (``keep``);
* jump in time beyond ``max_gap``: ``reset`` closes the key's segment (its pending points
  are scored if it had a full window, else left unscored) and re-warms; ``ignore``
  carries on as if contiguous.

The state is plain arrays (see :meth:`Windows.state_dict`) so it can be checkpointed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from streamae.config import WindowConfig

OK, NAN_FILLED, GAP, NAN_DROPPED, LATE, DUPLICATE = range(6)
STATUS_NAMES = ("ok", "nan_filled", "gap", "nan_dropped", "late", "duplicate")
DROPPED_FROM = NAN_DROPPED  # statuses >= this were not added to the window


@dataclass
class Closed:
    """Windows closed by one push: ``data`` ``(k, W, C)`` scaled values, and per window the
    key slot, how many newest points it scores, whether it is full (scorable), and the
    row ids and timestamps of its W positions (oldest first)."""

    data: np.ndarray
    slot: np.ndarray
    new: np.ndarray
    scorable: np.ndarray
    rows: np.ndarray
    ts: np.ndarray

    def __len__(self) -> int:
        return len(self.slot)

    def take(self, idx: np.ndarray) -> Closed:
        """The windows at ``idx``, in that order."""
        return Closed(self.data[idx], self.slot[idx], self.new[idx], self.scorable[idx],
                      self.rows[idx], self.ts[idx])


class Windows:
    """Ring buffers for many keys; grows as new key slots appear."""

    def __init__(self, config: WindowConfig, channels: int, capacity: int = 64,
                 out_capacity: int = 256) -> None:
        self.config, self.channels = config, channels
        self.size = config.size
        self.out_capacity = out_capacity
        self.ring = np.zeros((capacity, self.size, channels), dtype=np.float32)
        self.ring_rows = np.full((capacity, self.size), -1, dtype=np.int64)
        self.ring_ts = np.zeros((capacity, self.size), dtype=np.float64)
        self.pos = np.zeros(capacity, dtype=np.int64)
        self.count = np.zeros(capacity, dtype=np.int64)
        self.pending = np.zeros(capacity, dtype=np.int64)
        self.last_ts = np.full(capacity, -np.inf, dtype=np.float64)
        self.last_val = np.zeros((capacity, channels), dtype=np.float32)
        self.counters = np.zeros(len(STATUS_NAMES), dtype=np.int64)
        self._out = _alloc_out(out_capacity, self.size, channels)

    @property
    def capacity(self) -> int:
        return len(self.pos)

    def ensure(self, slots: int) -> None:
        """Grow the per-key arrays to hold at least ``slots`` keys."""
        if slots <= self.capacity:
            return
        new = max(slots, 2 * self.capacity)
        for name in ("ring", "ring_rows", "ring_ts", "pos", "count", "pending", "last_ts",
                     "last_val"):
            old = getattr(self, name)
            grown = np.empty((new, *old.shape[1:]), dtype=old.dtype)
            grown[: len(old)] = old
            grown[len(old):] = self._EMPTY.get(name, 0)
            setattr(self, name, grown)

    def push(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray,
             rows: np.ndarray) -> tuple[np.ndarray, list[Closed]]:
        """Append scaled points in order; returns each point's status and the windows closed."""
        n = len(slots)
        status = np.empty(n, dtype=np.int8)
        closed: list[Closed] = []
        c = self.config
        start = 0
        while start < n:
            start, k = _push(slots, ts, values, rows, start, self.ring, self.ring_rows,
                             self.ring_ts, self.pos, self.count, self.pending, self.last_ts,
                             self.last_val, c.hop, c.nan_policy == "ffill",
                             c.duplicate_policy == "keep", c.max_gap or 0.0,
                             c.gap_policy == "reset", status, self.counters, *self._out)
            if k:
                closed.append(self._take(k))
        return status, closed

    def flush(self, slots: np.ndarray | None = None) -> list[Closed]:
        """Close every key's pending points (end of a stream): scored if the key has a full
        window, otherwise reported unscorable."""
        if slots is None:
            slots = np.flatnonzero(self.pending > 0)
        closed: list[Closed] = []
        for begin in range(0, len(slots), self.out_capacity):
            part = np.asarray(slots[begin: begin + self.out_capacity], dtype=np.int64)
            k = _flush(part, self.ring, self.ring_rows, self.ring_ts, self.pos, self.count,
                       self.pending, *self._out)
            if k:
                closed.append(self._take(k))
        return closed

    def _take(self, k: int) -> Closed:
        data, slot, new, scorable, rows, ts = self._out
        return Closed(data[:k].copy(), slot[:k].copy(), new[:k].copy(), scorable[:k].copy(),
                      rows[:k].copy(), ts[:k].copy())

    def counts(self) -> dict[str, int]:
        """How many points each policy decision applied to."""
        return dict(zip(STATUS_NAMES, map(int, self.counters)))

    _PER_KEY = ("ring", "ring_rows", "ring_ts", "pos", "count", "pending", "last_ts",
                "last_val")
    _STATE = (*_PER_KEY, "counters")
    _EMPTY = {"ring_rows": -1, "last_ts": -np.inf}  # a slot nobody has pushed to; else 0

    def take(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The given slots' windows (to hand those keys to another pipeline)."""
        return {name: getattr(self, name)[slots] for name in self._PER_KEY}

    def put(self, slots: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        """Write windows from :meth:`take` into the given slots (grown to fit)."""
        self.ensure(int(slots.max()) + 1 if len(slots) else 0)
        for name in self._PER_KEY:
            getattr(self, name)[slots] = rows[name]

    def reset(self, slots: np.ndarray) -> None:
        """Empty the given slots' windows (their keys warm up again)."""
        for name in self._PER_KEY:
            getattr(self, name)[slots] = self._EMPTY.get(name, 0)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).copy() for name in self._STATE}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name in self._STATE:
            setattr(self, name, np.array(state[name], dtype=getattr(self, name).dtype))


def _alloc_out(k: int, w: int, c: int) -> tuple[np.ndarray, ...]:
    return (np.zeros((k, w, c), dtype=np.float32), np.zeros(k, dtype=np.int64),
            np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.bool_),
            np.zeros((k, w), dtype=np.int64), np.zeros((k, w), dtype=np.float64))


@njit(cache=True)
def _close(slot, ring, ring_rows, ring_ts, pos, count, pending, k, out_data, out_slot, out_new,
           out_scorable, out_rows, out_ts):
    """Write the window of ``slot`` (oldest first) to output ``k``; clear its pending count."""
    w = ring.shape[1]
    p = pos[slot]
    for j in range(w):
        src = (p + j) % w
        out_data[k, j] = ring[slot, src]
        out_rows[k, j] = ring_rows[slot, src]
        out_ts[k, j] = ring_ts[slot, src]
    out_slot[k] = slot
    out_new[k] = min(pending[slot], w)
    out_scorable[k] = count[slot] >= w
    pending[slot] = 0


@njit(cache=True)
def _push(slots, ts, values, rows, start, ring, ring_rows, ring_ts, pos, count, pending, last_ts,
          last_val, hop, ffill, keep_dup, max_gap, gap_reset, status, counters, out_data,
          out_slot, out_new, out_scorable, out_rows, out_ts):
    w = ring.shape[1]
    cap = out_slot.shape[0]
    nch = values.shape[1]
    k = 0
    i = start
    while i < len(slots):
        if k + 2 > cap:
            break
        s = slots[i]
        t = ts[i]
        st = 0
        if t < last_ts[s]:
            st = 4
        elif t == last_ts[s] and not keep_dup:
            st = 5
        else:
            for c in range(nch):
                if not np.isfinite(values[i, c]):
                    st = 1 if ffill else 3
                    break
        if st >= 3:
            status[i] = st
            counters[st] += 1
            i += 1
            continue
        if max_gap > 0.0 and count[s] > 0 and t - last_ts[s] > max_gap:
            if gap_reset and pending[s] > 0:
                _close(s, ring, ring_rows, ring_ts, pos, count, pending, k, out_data, out_slot,
                       out_new, out_scorable, out_rows, out_ts)
                k += 1
            if gap_reset:
                count[s] = 0
            if st == 0:
                st = 2
            counters[2] += 1
        p = pos[s]
        for c in range(nch):
            v = values[i, c]
            if np.isfinite(v):
                last_val[s, c] = v
            ring[s, p, c] = last_val[s, c]
        ring_rows[s, p] = rows[i]
        ring_ts[s, p] = t
        pos[s] = (p + 1) % w
        count[s] += 1
        pending[s] += 1
        last_ts[s] = t
        status[i] = st
        counters[st] += 1
        if count[s] >= w and pending[s] >= hop:
            _close(s, ring, ring_rows, ring_ts, pos, count, pending, k, out_data, out_slot,
                   out_new, out_scorable, out_rows, out_ts)
            k += 1
        i += 1
    return i, k


@njit(cache=True)
def _flush(slots, ring, ring_rows, ring_ts, pos, count, pending, out_data, out_slot, out_new,
           out_scorable, out_rows, out_ts):
    k = 0
    for s in slots:
        if pending[s] > 0:
            _close(s, ring, ring_rows, ring_ts, pos, count, pending, k, out_data, out_slot,
                   out_new, out_scorable, out_rows, out_ts)
            k += 1
    return k
