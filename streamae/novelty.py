"""Novelty: how far each window is from everything its key showed before.

Per key, a ring of its recent normal windows, each remembered as the means of ``steps``
equal parts of every channel (scaled units). A new window is compared with the newest
``size`` remembered ones that do not overlap it (ended at least W points earlier), and
its distance to the nearest is how new it is for this key: a causal nearest-neighbour
(left matrix profile) distance over a bounded memory. The ring holds ``spare`` more
windows than that, as many as can overlap one window, so a window is compared with the
same ones whether the windows before it were remembered one at a time or after it was
judged in the same batch. Once the alarm stage has judged it, it
is remembered unless it lies in an alarm or crossed the threshold: what a key keeps
doing normally stops being new, while an incident stays new (as the replay buffer keeps
it out of training).

The distance, standardised on held-out windows at training time, carries
``novelty.weight`` of the score beside the models' average
(:class:`~streamae.models.calibration.Calibration`); each channel's share of it joins the
attribution. The state is plain arrays, checkpointed and moved with partitions
like the thresholds'.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from streamae.models.dataset import key_series
from streamae.models.scaler import Scaler
from streamae.threshold.base import KeyedState
from streamae.types import Frame

# state columns: the key's points so far, windows remembered, ring position
N_POINTS, N_SIZE, N_POS = range(3)
NOVELTY_COLS = 3


@dataclass(frozen=True)
class NoveltySettings:
    """What a detector was calibrated with (``size`` 0: no novelty member)."""

    size: int = 0
    steps: int = 8
    least: int = 16
    weight: float = 0.5
    level: float = 1.0  # earlier checkpoints: levels count in full

    @property
    def on(self) -> bool:
        return self.size > 0

    def features(self, windows: np.ndarray) -> np.ndarray:
        """Windows as this member remembers them (see :func:`features`)."""
        return features(windows, self.steps, self.level)


def features(windows: np.ndarray, steps: int, level: float = 1.0) -> np.ndarray:
    """Windows ``(B, W, C)`` as the means of ``steps`` equal parts of each channel,
    flattened part-major ``(B, steps * C)``. ``level`` < 1 shrinks each channel's mean
    over the window towards 0 in every part: the squared distance of two windows is then
    that of their shapes plus ``level ** 2`` times that of their levels (times
    ``steps``), so a slow move of level counts less than a new shape."""
    b, w, c = windows.shape
    starts, lengths = _parts(w, min(steps, w))
    sums = np.add.reduceat(windows.astype(np.float32, copy=False), starts, axis=1)
    parts = sums / lengths[None, :, None]
    if level != 1.0:  # the window's mean, from its parts' sums
        parts -= np.float32((1.0 - level) / w) * sums.sum(axis=1)[:, None, :]
    return parts.reshape(b, len(starts) * c)


@functools.lru_cache(maxsize=64)
def _parts(w: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """First index and length of each of ``steps`` near-equal parts of ``w`` steps."""
    bounds = np.linspace(0, w, steps + 1).round().astype(np.int64)
    starts, lengths = bounds[:-1].copy(), np.diff(bounds).astype(np.float32)
    starts.flags.writeable = lengths.flags.writeable = False  # shared by every call
    return starts, lengths


def nearest(feats: np.ndarray, memory: np.ndarray, channels: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Each feature row's distance to its nearest row of ``memory`` (windows that do not
    overlap it) and each channel's share of that distance's square: what
    :meth:`Novelty.judge` gives, for windows judged outside a key's ring."""
    d2 = ((feats ** 2).sum(1)[:, None] + (memory ** 2).sum(1)[None, :]
          - 2.0 * feats @ memory.T)
    at = d2.argmin(axis=1)
    diff = (feats - memory[at]) ** 2
    share = diff.reshape(len(feats), -1, channels).sum(axis=1)
    total = share.sum(axis=1, keepdims=True)
    share = np.divide(share, total, out=np.zeros_like(share), where=total > 0)
    return np.sqrt(total[:, 0]), share.astype(np.float32)


@dataclass
class Judged:
    """Per judged window: distance (nan: none), channel shares ``(n, C)``, the features
    it would be remembered as, and its end (its key's point count)."""

    distance: np.ndarray
    share: np.ndarray
    features: np.ndarray
    end: np.ndarray


class Novelty(KeyedState):
    """Per-key rings of remembered windows and the nearest-neighbour search over them."""

    _STATE = ("state", "bank", "ends")
    _DTYPES = {"bank": np.float32}

    def __init__(self, settings: NoveltySettings, window: int, channels: int,
                 capacity: int = 64, hop: int = 1) -> None:
        self.settings, self.window, self.channels = settings, window, channels
        self.steps = min(settings.steps, window)
        self.dim = self.steps * channels
        # windows of a key end at least a hop apart (a flush may close one sooner)
        self.slots = settings.size + (-(-window // max(hop, 1)) + 1 if settings.size else 0)
        super().__init__(np.zeros(NOVELTY_COLS), capacity)
        self.bank = np.zeros((capacity, self.slots * self.dim), dtype=np.float32)
        self.ends = np.zeros((capacity, self.slots))

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(self._laid_out(state))

    def put(self, slots: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        super().put(slots, self._laid_out(rows))

    def _laid_out(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows saved with another ring length (an earlier version's) in this ring's
        layout: each key's newest remembered windows, oldest first."""
        ends = np.asarray(rows["ends"])
        old = ends.shape[1] if ends.ndim == 2 else self.slots
        if old == self.slots:
            return rows
        n = len(ends)
        state = np.array(rows["state"], dtype=np.float64)
        bank = np.asarray(rows["bank"], dtype=np.float32).reshape(n, old, self.dim)
        new_bank = np.zeros((n, self.slots, self.dim), np.float32)
        new_ends = np.zeros((n, self.slots))
        for r in range(n):
            held, pos = int(state[r, N_SIZE]), int(state[r, N_POS])
            order = ((pos - held + np.arange(held)) % max(old, 1))[-self.slots:]
            new_bank[r, : len(order)], new_ends[r, : len(order)] = bank[r, order], ends[r, order]
            state[r, N_SIZE], state[r, N_POS] = len(order), len(order) % max(self.slots, 1)
        return {**rows, "state": state, "bank": new_bank.reshape(n, -1), "ends": new_ends}

    def judge(self, slots: np.ndarray, windows: np.ndarray, new: np.ndarray,
              query: np.ndarray, insert: np.ndarray | None = None) -> Judged:
        """Windows of the given slots, in order: ``new`` points each added to its key;
        those to ``query`` get their distance (nan while the key remembers fewer than
        ``least`` usable windows) and each channel's share of it; those to ``insert`` are
        remembered at once (default: none; see :meth:`remember`)."""
        n = len(slots)
        self.ensure(int(slots.max()) + 1 if n else 0)
        insert = np.zeros(n, np.bool_) if insert is None else insert.astype(np.bool_)
        out = Judged(np.full(n, np.nan), np.zeros((n, self.channels), dtype=np.float32),
                     self.settings.features(windows), np.zeros(n))
        if n:
            novelty_batch(slots.astype(np.int64), out.features, new.astype(np.float64),
                          query.astype(np.bool_), insert, self.state, self.bank, self.ends,
                          self.slots, self.settings.size, self.window, self.settings.least,
                          out.distance, out.share, out.end)
        return out

    def remember(self, slots: np.ndarray, judged: Judged, which: np.ndarray) -> None:
        """Remember the ``which`` of windows judged before (in order)."""
        idx = np.flatnonzero(which)
        if len(idx) and self.settings.size:
            novelty_remember(slots[idx].astype(np.int64), judged.features[idx],
                             judged.end[idx], self.state, self.bank, self.ends, self.slots)

    def remembered(self, slot: int) -> np.ndarray:
        """A key's newest ``size`` remembered windows, oldest first ``(m, steps * C)``."""
        held, pos = int(self.state[slot, N_SIZE]), int(self.state[slot, N_POS])
        bank = self.bank[slot].reshape(self.slots, self.dim)
        order = (pos - held + np.arange(held)) % max(self.slots, 1)
        return bank[order[-self.settings.size:] if self.settings.size else order[:0]].copy()

    def seed(self, slot: int, remembered: np.ndarray) -> None:
        """Start a key's memory from windows remembered before (oldest first; the newest
        ``size`` of them), all usable at once."""
        self.ensure(slot + 1)
        self.reset(np.array([slot]))
        take = remembered[len(remembered) - min(len(remembered), self.settings.size):]
        n = len(take)
        self.bank[slot, : n * self.dim] = take.reshape(-1)
        self.ends[slot, :n] = -np.inf
        self.state[slot, N_SIZE] = n
        self.state[slot, N_POS] = n % max(self.slots, 1)


@njit(cache=True)
def _insert(k, feats, end, state, bank, ends, slots):
    dim = len(feats)
    pos = int(state[k, N_POS])
    for t in range(dim):
        bank[k, pos * dim + t] = feats[t]
    ends[k, pos] = end
    state[k, N_POS] = (pos + 1) % slots
    state[k, N_SIZE] = min(state[k, N_SIZE] + 1, slots)


@njit(cache=True, fastmath=True)
def _squared(a, b):
    """Squared distance of two float32 vectors (a loop the compiler vectorises)."""
    d = np.float32(0.0)
    for t in range(len(a)):
        diff = a[t] - b[t]
        d += diff * diff
    return d


@njit(cache=True)
def novelty_batch(slots, feats, new, query, insert, state, bank, ends, ring, size, window,
                  least, out_dist, out_share, out_end):
    """Per window, in order: advance its key's point count by ``new`` (its end is then
    that count); if ``query``, the distance to the nearest of the newest ``size``
    remembered windows that ended at least ``window`` points before this one (nan with
    fewer than ``least`` of them) and each channel's share of its square; if ``insert``,
    remember it (the oldest of the ``ring`` slots is forgotten when full)."""
    dim = feats.shape[1]
    channels = out_share.shape[1]
    for i in range(len(slots)):
        k = slots[i]
        state[k, N_POINTS] += new[i]
        now = state[k, N_POINTS]
        out_end[i] = now
        if query[i]:
            best, at, usable = np.inf, -1, 0
            held, pos = int(state[k, N_SIZE]), int(state[k, N_POS])
            for t in range(held):  # newest first
                j = (pos - 1 - t) % ring
                if ends[k, j] > now - window:
                    continue
                if usable == size:
                    break
                usable += 1
                d = _squared(feats[i], bank[k, j * dim:(j + 1) * dim])
                if d < best:
                    best, at = d, j
            if usable >= least and at >= 0:
                out_dist[i] = math.sqrt(best)
                if best > 0.0:
                    off = at * dim
                    for t in range(dim):
                        diff = feats[i, t] - bank[k, off + t]
                        out_share[i, t % channels] += diff * diff / best
        if insert[i] and ring > 0:
            _insert(k, feats[i], now, state, bank, ends, ring)


@njit(cache=True)
def novelty_remember(slots, feats, end, state, bank, ends, ring):
    """Remember windows judged before, in order."""
    for i in range(len(slots)):
        _insert(slots[i], feats[i], end[i], state, bank, ends, ring)


SEED_BUDGET = 4_000_000  # remembered numbers a detector carries for all its training keys


def replay(x: np.ndarray, ends: np.ndarray, settings: NoveltySettings, window: int,
           hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances of the windows of one key's scaled series ``x`` ``(n, C)`` ending at the
    rows ``ends`` (sorted), as a live key would have them: the series streams through a
    fresh memory (a window remembered every ``hop`` rows from the first full one), and
    each of those windows is judged against what came before it. Also returns what the
    memory holds at the end, oldest first ``(m, steps * C)``."""
    memory = Novelty(settings, window, x.shape[1], capacity=1, hop=hop)
    if len(x) < window:
        return np.full(len(ends), np.nan), memory.remembered(0)
    stream = np.arange(window - 1, len(x), hop)
    at = np.union1d(stream, ends)
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1)
    judged = memory.judge(np.zeros(len(at), dtype=np.int64), view[at - window + 1],
                          np.diff(np.r_[0, at + 1]), np.isin(at, ends), np.isin(at, stream))
    return judged.distance[np.searchsorted(at, ends)], memory.remembered(0)


def held_out(frame: Frame, scaler: Scaler, keys: np.ndarray, ends: np.ndarray,
             settings: NoveltySettings, window: int, hop: int
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Novelty distances of held-out windows given by key and end row (see
    :func:`~streamae.models.dataset.training_windows`), with every training key's memory
    as its history leaves it (the newest windows, at most :data:`SEED_BUDGET` numbers
    for all keys together): what the novelty member is calibrated on, and where a live
    key's memory starts. nan and nothing when ``settings`` are off."""
    out = np.full(len(keys), np.nan)
    seeds: dict[str, np.ndarray] = {}
    if not settings.on:
        return out, seeds
    for key, _, x in key_series(frame, scaler):
        sel = np.flatnonzero(keys == key)
        out[sel], seeds[key] = replay(x, ends[sel], settings, window, hop)
    per_key = SEED_BUDGET // max(1, sum(s.shape[1] for s in seeds.values()))
    return out, {k: v[len(v) - min(len(v), per_key):] for k, v in seeds.items()}
