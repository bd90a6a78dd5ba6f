"""Re-scaling: a recalibrated sensor needs new per-channel scaling, not a new model.

A key that stays in alarm may have had some channels recalibrated (a new offset, a new
gain) while the process they measure behaves as before. That is told from an incident by
trying it: each channel's level and spread in the alarm's windows are mapped onto those
of the key's last normal windows, and the live model scores the mapped windows. Only if
they then score like the model's held-out normal windows is the change taken as a
recalibration and
the key's scaling changed (the alarm that went before stays an event). An incident (the
channels' relations broken, a shape the model never saw) still scores high after the
mapping and is left alone.

All in scaled units: a channel's value ``s`` maps to ``(s - loc) * ref_scale / scale +
ref_loc``, which is a change of the key's raw mean and spread (:meth:`Rescale.of`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamae.models.detector import Detector

# a channel counts as moved when its level moved by its normal spread, or its
# spread changed by half
MOVED_LEVEL, MOVED_GAIN = 1.0, 1.5
FLAT = 1e-3  # a spread below this (in scaled units) is a flat channel
MOVED_FLAT = 0.1  # a flat channel moved when its value moved by this much


@dataclass(frozen=True)
class Rescale:
    """One key's change of scaling, per channel, in the key's current scaled units."""

    loc: np.ndarray
    scale: np.ndarray
    ref_loc: np.ndarray
    ref_scale: np.ndarray
    moved: np.ndarray  # bool per channel: the others keep their scaling

    def windows(self, windows: np.ndarray) -> np.ndarray:
        """Scaled windows ``(n, W, C)`` under the new scaling."""
        out = windows.astype(np.float32, copy=True)
        m = self.moved
        out[..., m] = ((windows[..., m] - self.loc[m]) * (self.ref_scale[m] / self.scale[m])
                       + self.ref_loc[m])
        return out

    def of(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The key's new raw ``(mean, std)`` from its current ones."""
        gain = np.where(self.moved, self.scale / self.ref_scale, 1.0)
        shift = np.where(self.moved, self.loc - self.ref_loc * gain, 0.0)
        return mean + std * shift, std * gain


def _level_spread(windows: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's mean and spread over the windows' newest ``hop`` steps (every point
    once): the statistics the key's scaling is made of."""
    points = windows[:, -hop:, :].reshape(-1, windows.shape[-1]).astype(np.float64)
    return points.mean(axis=0), points.std(axis=0)


def propose(alarm: np.ndarray, normal: np.ndarray | None, hop: int) -> Rescale | None:
    """The mapping of the ``alarm`` windows' channel levels onto the ``normal`` ones' (or,
    without them, onto the scaling's own: mean 0, spread 1), or None when no channel
    moved (or none that has a spread to map)."""
    loc, scale = _level_spread(alarm, hop)
    channels = alarm.shape[-1]
    ref_loc, ref_scale = (_level_spread(normal, hop) if normal is not None
                          else (np.zeros(channels), np.ones(channels)))
    flat, ref_flat = scale <= FLAT, ref_scale <= FLAT
    usable = ~flat & ~ref_flat
    ratio = np.where(usable, scale / np.where(usable, ref_scale, 1.0), 1.0)
    moved = usable & ((np.abs(loc - ref_loc) > MOVED_LEVEL * ref_scale)
                      | (ratio > MOVED_GAIN) | (ratio < 1.0 / MOVED_GAIN))
    # a channel flat in both (a setting, an idle command line) at another value: a shift
    # alone; one flat in only one of them changed its behaviour, which scaling cannot map
    shifted = flat & ref_flat & (np.abs(loc - ref_loc) > MOVED_FLAT)
    if not (moved | shifted).any():
        return None
    return Rescale(loc, np.where(usable, scale, 1.0), ref_loc, np.where(usable, ref_scale, 1.0),
                   moved | shifted)


def point_scores(model: Detector, windows: np.ndarray, hop: int) -> np.ndarray:
    """The model's finite scores of the windows' newest ``hop`` steps."""
    scores = model.score(windows, batch_size=1024)[0][:, -hop:].ravel()
    return scores[np.isfinite(scores)]


def explains(model: Detector, change: Rescale, alarm: np.ndarray, usual: np.ndarray,
             hop: int) -> tuple[bool, float, float]:
    """Whether the alarm windows, re-scaled, score like the key's normal: the 90th
    percentile of their scores at most the 99th of ``usual`` (the key's normal scores).
    Returns the verdict and both percentiles."""
    mapped = point_scores(model, change.windows(alarm), hop)
    usual = usual[np.isfinite(usual)]
    if not len(mapped) or not len(usual):
        return False, np.nan, np.nan
    after, normal = float(np.quantile(mapped, 0.9)), float(np.quantile(usual, 0.99))
    return after <= normal, after, normal
