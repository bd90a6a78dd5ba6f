"""Tail-probability threshold: each score judged against the key's own recent scores."""

from __future__ import annotations

import numpy as np

from streamae.config import ThresholdConfig
from streamae.threshold.base import KeyedState
from streamae.threshold.alarm import Alarm, AlarmOutput
from streamae.threshold.tail_kernel import (LEARN_ALL, LEARN_CALM, LEARN_CAPPED, T_CAP,
                                            T_FLOOR, T_MED, T_NOW, T_OVER, T_REACH, T_SHAPE,
                                            T_SIZE, T_Z, TAIL_COLS, tail_alarm_batch,
                                            tail_batch, tail_seed)

LEARN = {"all": LEARN_ALL, "capped": LEARN_CAPPED, "calm": LEARN_CALM}


class TailThreshold(KeyedState):
    """Per key, a memory of its recent scores (one per ``sample_every`` points, covering
    ``memory`` points) with a generalised Pareto tail fitted above their
    ``init_quantile``. A score's tail probability is how often the key's recent normal
    reaches it; the threshold is the level reached with probability ``risk``, so one
    ``risk`` means the same for every key and model.

    A key starts from held-out training scores (:meth:`seed`, worth ``init_points``), so
    it has a threshold at once; its own scores soon outweigh them. While its memory is
    young, its tail pools its own peaks with the held-out tail's (``prior_peaks`` of its
    own, fading as the memory fills), since a tail on one or two peaks of its own would
    jump with each new one. A key with no seed has
    a threshold once it has ``init_points`` scores. With ``learn: capped`` every point
    is remembered capped at the threshold, so an alarm barely moves it, as long as the
    threshold is crossed on at most ``relearn_above`` of the key's recent points; a key
    crossing it more often than that (hundreds of times what ``risk`` allows) is not
    having an anomaly but a threshold that does not describe it (a prior from training
    that its live data has left, a new normal), and its points are remembered as they are
    until it does again. Its alarm levels then count from where it is now (the median of
    its newest scores) rather than from the median of a memory still full of its old
    level, so an alarm the move opened closes once the threshold has re-learnt.
    Capped incidents would also hold up a threshold that a change lifted (peaks at the
    cap fit a tail at the cap, at any level), so a seeded key's threshold lies at most
    ``shape_bound`` times as far above the median of its newest scores, in their
    upper-quartile spreads, as its held-out threshold lies above theirs.
    With ``calm`` nothing from inside an alarm is remembered (taking a new level as
    normal is then the updater's call); ``all`` remembers every point as it is.
    """

    _STATE = ("state", "ring", "ordered")
    _DTYPES = {"ring": np.float32, "ordered": np.float32}

    def __init__(self, config: ThresholdConfig, capacity: int = 64) -> None:
        self.config = config
        self.every = max(1, config.sample_every)
        self.size = max(8, config.memory // self.every)
        # no threshold from fewer remembered scores than init_points stand for
        self.least = min(self.size, max(3, config.init_points // self.every))
        self.guard = config.relearn_above
        super().__init__(_fill(), capacity)
        self.ring = np.zeros((capacity, self.size), dtype=np.float32)
        self.ordered = np.zeros((capacity, self.size), dtype=np.float32)  # ring, ascending

    def apply(self, slots: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return self.judge(slots, scores)[0]

    def judge(self, slots: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Thresholds each point was judged against and its tail probability (nan while
        its key has no scores at all)."""
        thr, prob = np.empty(len(slots)), np.empty(len(slots))
        c = self.config
        tail_batch(slots, scores.astype(np.float64), self.state, self.ring, self.ordered,
                   c.risk, c.init_quantile, self.every, LEARN[c.learn], self.least,
                   c.prior_peaks, self.guard, thr, prob)
        return thr, prob

    def judge_with(self, alarm: Alarm, slots: np.ndarray, ts: np.ndarray,
                   scores: np.ndarray) -> tuple[np.ndarray, AlarmOutput]:
        """Threshold and the alarm stage point by point (what a key remembers can depend
        on whether the point is inside an alarm)."""
        n = len(slots)
        thr = np.empty(n)
        out = AlarmOutput(np.empty(n, dtype=np.bool_), np.empty(n, dtype=np.int8),
                          np.empty(n), np.empty(n, dtype=np.bool_), np.empty(n))
        c, a = self.config, alarm.config
        tail_alarm_batch(slots, ts, scores.astype(np.float64), self.state, self.ring,
                         self.ordered, c.risk, c.init_quantile, self.every, LEARN[c.learn],
                         self.least, c.prior_peaks, self.guard, alarm.state, a.enter_level,
                         a.exit_level, a.min_hits, a.hit_window, alarm.spans, alarm.points,
                         a.prune, thr, out.anomaly, out.event, out.event_ts, out.peak,
                         out.last_hot)
        return thr, out

    def seed(self, slot: int, sample: np.ndarray) -> None:
        """A new key's memory, from held-out training scores: as many as ``init_points``
        stand for (one per ``sample_every``), so its own scores soon outweigh them."""
        self._load(slot, sample, self.least, self.every, floor=True)

    def refit(self, slot: int, scores: np.ndarray, lent: bool = False) -> None:
        """Restart one key's memory from its recent scores (after a model swap): every
        one of them, the newest if they overfill it. ``lent`` (a new normal's first
        stretch, a long alarm's scores): one per ``sample_every``, as the key learns its
        own, standing in only until as many of its points have followed, so one stretch
        does not hold the threshold up for the whole memory. Otherwise they are
        remembered as the key would have learnt them (see :meth:`cap`): an incident
        among them that no alarm kept out of the updater's buffer does not lift the
        key's threshold over the next incidents."""
        cap = np.inf if lent else self.cap(slot, scores)
        bound = self.state[slot, T_SHAPE:T_REACH + 1].copy() if slot < len(self.state) \
            else np.full(2, np.nan)
        values = self._restart(slot, scores)
        self.state[slot, T_SHAPE:T_REACH + 1] = bound  # from held-out scores only
        self._load(slot, np.minimum(values, cap), self.size, self.every if lent else 1,
                   lent=lent)

    def cap(self, slot: int, scores: np.ndarray) -> float:
        """The level a key's memory would cap ``scores`` (a swapped-in model's) at: its
        threshold; inf where it caps nothing (``learn: all``, ``capped`` while crossing
        its threshold on more than ``relearn_above`` of its points, no threshold yet) or
        where the scores are on another scale (most of them over it)."""
        learn, row = self.config.learn, self.state[slot] if slot < len(self.state) else None
        values = np.asarray(scores, dtype=np.float64)
        values = values[np.isfinite(values)]
        if (row is None or not np.isfinite(row[T_Z]) or not len(values) or learn == "all"
                or (learn == "capped" and row[T_OVER] > self.guard)
                or np.median(values) > row[T_Z]):
            return np.inf
        return float(row[T_Z])

    def _load(self, slot: int, values: np.ndarray, limit: int, every: int,
              floor: bool = False, lent: bool = False) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        self.ensure(slot + 1)
        c = self.config
        tail_seed(values, every, limit, self.ring[slot], self.ordered[slot], self.state[slot],
                  c.risk, c.init_quantile, min(self.least, 3), c.prior_peaks, floor, lent,
                  c.shape_bound)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(_with_order(state))

    def put(self, slots: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        super().put(slots, _with_order(rows))

    def known(self, slots: np.ndarray) -> np.ndarray:
        """Which slots have a memory (seeded or learnt)."""
        return self.state[slots, T_SIZE] > 0

    def level(self, slot: int) -> float:
        return float(self.state[slot, T_Z])


def _with_order(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows saved before the ordered copy was kept: it is rebuilt from the rings."""
    if "ordered" in rows:
        return rows
    ring = np.asarray(rows["ring"], dtype=np.float32)
    sizes = np.asarray(rows["state"])[:, T_SIZE].astype(np.int64)
    ordered = np.zeros_like(ring)
    for i, n in enumerate(sizes):
        ordered[i, :n] = np.sort(ring[i, :n])
    return {**rows, "ordered": ordered}


def _fill() -> np.ndarray:
    row = np.zeros(TAIL_COLS)
    row[T_Z] = row[T_MED] = row[T_CAP] = row[T_FLOOR] = row[T_NOW] = np.nan  # none yet
    row[T_SHAPE] = row[T_REACH] = np.nan
    return row
