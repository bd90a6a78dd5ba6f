"""Extreme-value threshold: streaming peaks-over-threshold (SPOT)."""

from __future__ import annotations

import numpy as np

from streamae.config import ThresholdConfig
from streamae.threshold.base import KeyedState
from streamae.threshold.kernels import S_SEEN, SPOT_COLS, spot_batch, spot_fit


class SpotThreshold(KeyedState):
    """Per key: calibrate on the first ``init_points`` scores, fit a generalised Pareto tail
    above their ``init_quantile``, and keep the level a normal score exceeds with
    probability ``risk``. Scores above the level are anomalies and are not learnt."""

    _STATE = ("state", "init_buf")

    def __init__(self, config: ThresholdConfig, capacity: int = 64) -> None:
        self.config = config
        super().__init__(np.zeros(SPOT_COLS), capacity)
        self.init_buf = np.zeros((capacity, config.init_points))

    def apply(self, slots: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Thresholds each point was judged against (nan while its key calibrates)."""
        out = np.empty(len(slots))
        spot_batch(slots, scores.astype(np.float64), self.state, self.init_buf, self.config.risk,
                   self.config.init_quantile, out)
        return out

    def refit(self, slot: int, scores: np.ndarray, lent: bool = False) -> None:
        """Restart one key's threshold fitted at once to a sample of its recent scores
        (more than ``init_points`` fit the tail better). ``lent`` changes nothing here:
        SPOT keeps no memory that a stretch could stand in for."""
        values = self._restart(slot, scores)
        if len(values) < self.config.init_points:
            self.apply(np.full(len(values), slot, dtype=np.int64), values)
            return
        spot_fit(values, self.config.risk, self.config.init_quantile, self.state[slot])
        self.state[slot, S_SEEN] = self.config.init_points

    def seed(self, slot: int, sample: np.ndarray) -> None:
        """A new key's threshold at once, calibrated on held-out training scores."""
        self.refit(slot, sample)
