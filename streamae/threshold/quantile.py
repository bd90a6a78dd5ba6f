"""Streaming quantile threshold (P-square estimator, constant memory per key)."""

from __future__ import annotations

import numpy as np

from streamae.config import ThresholdConfig
from streamae.threshold.base import KeyedState
from streamae.threshold.kernels import P2_COLS, p2_batch


class QuantileThreshold(KeyedState):
    """Per key: threshold = ``margin`` x running ``quantile`` of the scores seen so far."""

    def __init__(self, config: ThresholdConfig, capacity: int = 64) -> None:
        self.config = config
        super().__init__(np.zeros(P2_COLS), capacity)

    def apply(self, slots: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Thresholds each point was judged against (nan until ``init_points`` scores)."""
        out = np.empty(len(slots))
        c = self.config
        p2_batch(slots, scores.astype(np.float64), self.state, c.quantile, c.margin,
                 c.init_points, out)
        return out

    def refit(self, slot: int, scores: np.ndarray, lent: bool = False) -> None:
        """Restart one key's quantile on a sample of its recent scores (in time order);
        ``lent`` changes nothing here (a streaming quantile keeps no memory of scores)."""
        values = self._restart(slot, scores)
        self.apply(np.full(len(values), slot, dtype=np.int64), values)

    def seed(self, slot: int, sample: np.ndarray) -> None:
        """A new key's threshold at once, calibrated on held-out training scores."""
        self.refit(slot, sample)
