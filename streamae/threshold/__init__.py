"""Streaming thresholds (Numba kernels) and the alarm stage."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamae.config import AlarmConfig, ThresholdConfig
from streamae.threshold.alarm import Alarm, AlarmOutput
from streamae.threshold.quantile import QuantileThreshold
from streamae.threshold.spot import SpotThreshold
from streamae.threshold.tail import TailThreshold

THRESHOLDS = {"tail": TailThreshold, "spot": SpotThreshold, "quantile": QuantileThreshold}

__all__ = ["THRESHOLDS", "Alarm", "AlarmOutput", "Decision", "build_threshold"]


def build_threshold(config: ThresholdConfig) -> TailThreshold | SpotThreshold | QuantileThreshold:
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
        if isinstance(self.threshold, TailThreshold):
            thresholds, out = self.threshold.judge_with(self.alarm, slots, ts, scores)
            return thresholds, out
        thresholds = self.threshold.apply(slots, scores)
        return thresholds, self.alarm.apply(slots, ts, scores, thresholds)

    def seed(self, samples: dict[int, np.ndarray]) -> None:
        """New keys' thresholds from held-out training scores (a threshold at once)."""
        for slot, values in samples.items():
            self.threshold.seed(slot, values)

    def refit(self, scores: dict[int, np.ndarray], lent: bool = False) -> None:
        """After a model swap (or a key's new normal): restart the threshold of each given
        slot, calibrated at once on that key's recent scores under the scoring model (in
        time order), so it is neither blind while re-warming nor judging new scores by an
        old scale; the tail threshold remembers them capped as the key would have learnt
        them (at its threshold, unless most are over it: another scale), so an incident
        among them does not lift it. ``lent``: the scores are one stretch (a new
        normal's first), which the tail threshold remembers as they are, only until as
        many points have followed. Open alarms stay open until calm; the strongest
        recent alarm peak, which prunes weaker alarms, is forgotten (it was measured
        against the old threshold)."""
        for slot, values in scores.items():
            self.threshold.refit(slot, values, lent)
        self.alarm.forget_peaks(np.fromiter(scores, dtype=np.int64, count=len(scores)))

    def reseed(self, samples: dict[int, np.ndarray]) -> None:
        """Known keys' thresholds start again from held-out training scores (a key with
        new scaling, or a model on another scale); as in :meth:`refit`, open alarms stay
        open and the strongest recent peak is forgotten."""
        slots = np.fromiter(samples, dtype=np.int64, count=len(samples))
        self.threshold.reset(slots)
        self.seed(samples)
        self.alarm.forget_peaks(slots)

    def _stages(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "alarm": self.alarm}

    def _joined(self, method: str, *args: Any) -> dict[str, np.ndarray]:
        return {f"{name}.{k}": v for name, stage in self._stages().items()
                for k, v in getattr(stage, method)(*args).items()}

    def _split(self, method: str, rows: dict[str, np.ndarray], *args: Any) -> None:
        for name, stage in self._stages().items():
            prefix = name + "."
            getattr(stage, method)(*args, {k[len(prefix):]: v for k, v in rows.items()
                                           if k.startswith(prefix)})

    def take(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The given slots' threshold and alarm rows."""
        return self._joined("take", slots)

    def put(self, slots: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        self._split("put", rows, slots)

    def reset(self, slots: np.ndarray) -> None:
        """The given slots start over: thresholds start again, no alarm is open."""
        self.threshold.reset(slots)
        self.alarm.reset(slots)

    def state_dict(self) -> dict[str, np.ndarray]:
        return self._joined("state_dict")

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._split("load_state_dict", state)
