"""Per-key, per-channel normalisation learned at training time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamae.types import Frame

CLIP = 10.0  # default clip of scaled inputs: beyond it a value carries no extra shape


@dataclass
class Scaler:
    """Mean and spread per key and channel; keys never seen use the global statistics.
    Scaled values are clipped to +-``clip``."""

    global_mean: np.ndarray
    global_std: np.ndarray
    per_key: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    clip: float = CLIP

    @staticmethod
    def fit(frame: Frame, clip: float = CLIP) -> Scaler:
        """Learn statistics from training rows (non-finite values ignored)."""
        values = frame.values.astype(np.float64)
        scaler = Scaler(*_stats(values), clip=clip)
        for key in frame.unique_keys():
            scaler.per_key[key] = _stats(values[frame.keys == key])
        return scaler

    def stats(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) for a key, falling back to the global statistics."""
        return self.per_key.get(key, (self.global_mean, self.global_std))

    def transform(self, values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """Scale rows given per-row ``mean``/``std`` (non-finite values stay non-finite)."""
        return np.clip((values - mean) / std, -self.clip, self.clip).astype(np.float32)

    def to_json(self) -> dict:
        return {
            "global": [self.global_mean.tolist(), self.global_std.tolist()],
            "per_key": {k: [m.tolist(), s.tolist()] for k, (m, s) in self.per_key.items()},
            "clip": self.clip,
        }

    @staticmethod
    def from_json(data: dict) -> Scaler:
        def arr(x: list) -> np.ndarray:
            return np.asarray(x, dtype=np.float64)

        return Scaler(arr(data["global"][0]), arr(data["global"][1]),
                      {k: (arr(m), arr(s)) for k, (m, s) in data["per_key"].items()},
                      float(data.get("clip", 20.0)))


def _stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    finite = np.where(np.isfinite(values), values, np.nan)
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(finite, axis=0), nan=0.0)
        std = np.nan_to_num(np.nanstd(finite, axis=0), nan=0.0)
    # A flat training channel still needs a finite unit: a small share of its level.
    floor = np.maximum(1e-2 * np.abs(mean), 1e-3)
    return mean, np.maximum(std, floor)
