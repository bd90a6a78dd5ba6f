"""Streaming thresholds (Numba kernels) and the alarm stage."""

from __future__ import annotations

import numpy as np

from streamae.config import AlarmConfig, ThresholdConfig
from streamae.threshold.alarm import Alarm, AlarmOutput
from streamae.threshold.quantile import QuantileThreshold
from streamae.threshold.spot import SpotThreshold

THRESHOLDS = {"spot": SpotThreshold, "quantile": QuantileThreshold}

__all__ = ["THRESHOLDS", "Alarm", "AlarmOutput", "Decision", "build_threshold"]


def build_threshold(config: ThresholdConfig) -> SpotThreshold | QuantileThreshold:
    """The threshold named by ``config.kind``."""
    return THRESHOLDS[config.kind](config)


class Decision:
    """Threshold then alarm: the post-processing every score stream goes through."""

    def __init__(self, threshold: ThresholdConfig, alarm: AlarmConfig) -> None:
        self.threshold = build_threshold(threshold)
        self.alarm = Alarm(alarm)

    def ensure(self, slots: int) -> None:
        self.threshold.ensure(slots)
        self.alarm.ensure(slots)

    def apply(self, slots: np.ndarray, ts: np.ndarray,
              scores: np.ndarray) -> tuple[np.ndarray, AlarmOutput]:
        """Judge scored points in order: thresholds used, and the alarm stage's output."""
        thresholds = self.threshold.apply(slots, scores)
        return thresholds, self.alarm.apply(slots, ts, scores, thresholds)

    def recalibrate(self, scores: dict[int, np.ndarray]) -> None:
        """After a model swap: restart the threshold of each given slot and warm it up at
        once on that key's recent scores under the new model (in time order), so it is
        neither blind while re-warming nor judging new scores by the old model's scale.
        Alarm state is kept: open alarms stay open."""
        for slot, values in scores.items():
            self.threshold.reset(np.array([slot]))
            self.threshold.apply(np.full(len(values), slot, dtype=np.int64),
                                 np.asarray(values, dtype=np.float64))

    def take(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The given slots' threshold and alarm rows."""
        return {**{f"threshold.{k}": v for k, v in self.threshold.take(slots).items()},
                **{f"alarm.{k}": v for k, v in self.alarm.take(slots).items()}}

    def put(self, slots: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        for prefix, stage in (("threshold.", self.threshold), ("alarm.", self.alarm)):
            stage.put(slots, {k[len(prefix):]: v for k, v in rows.items()
                              if k.startswith(prefix)})

    def reset(self, slots: np.ndarray) -> None:
        """The given slots start over: thresholds calibrate again, no alarm is open."""
        self.threshold.reset(slots)
        self.alarm.reset(slots)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**{f"threshold.{k}": v for k, v in self.threshold.state_dict().items()},
                **{f"alarm.{k}": v for k, v in self.alarm.state_dict().items()}}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for prefix, stage in (("threshold.", self.threshold), ("alarm.", self.alarm)):
            stage.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                   if k.startswith(prefix)})
