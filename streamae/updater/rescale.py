"""Re-scaling: a recalibrated sensor needs new per-channel scaling, not a new model.

A key that stays in alarm may have had some channels recalibrated (a new offset, a new
gain) while the process they measure behaves as before. That is told from an incident by
trying it: each channel's level and spread in the alarm's windows are mapped onto those
of the key's last normal windows, and the live model scores the mapped windows (their
novelty against those normal windows included). Only if they then score like the model's
held-out normal windows is the change taken as a
recalibration and the key's scaling changed (the alarm that went before stays an
event). An incident (the channels' relations broken, a shape the model never saw) still
scores high after the mapping and is left alone; a channel whose shape changed (its lag-1
autocorrelation outside its normal range, as a stuck sensor's) is never mapped at all.

All in scaled units: a channel's value ``s`` maps to ``(s - loc) * ref_scale / scale +
ref_loc``, which is a change of the key's raw mean and spread (:meth:`Rescale.of`).

An alarm's first hours are a short stretch: on a signal with a daily cycle their mean and
spread depend on the time of day. So they are compared like with like: against every
stretch of the key's normal as long as the alarm's (a channel moved only if the alarm's
level, or spread, lies outside all of theirs, beyond what noise moves a stretch's mean),
and the moved channels are mapped onto the normal stretch in the same phase, the one
whose unmoved channels look most like the alarm's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamae.models.detector import Detector
from streamae.novelty import nearest

# a channel counts as moved when its level moved by its normal spread, or its
# spread changed by half
MOVED_LEVEL, MOVED_GAIN = 1.0, 1.5
FLAT = 1e-3  # a spread below this (in scaled units) is a flat channel
MOVED_FLAT = 0.1  # a flat channel moved when its value moved by this much
# a channel taking at most this many values (a command line, a state) is mapped by its
# most common value and its range, which are exact for it: its mean and spread depend on
# how often each value came up, which differs from one stretch of time to the next
DISCRETE = 4


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


def _points(windows: np.ndarray, hop: int) -> np.ndarray:
    """The windows' newest ``hop`` steps (every point once), ``(points, channels)``."""
    return windows[:, -hop:, :].reshape(-1, windows.shape[-1]).astype(np.float64)


def _discrete(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: whether it takes at most :data:`DISCRETE` distinct values, and its
    most common value."""
    rounded = np.round(points, 6)
    discrete, mode = np.zeros(points.shape[1], bool), np.zeros(points.shape[1])
    for c in range(points.shape[1]):
        values, counts = np.unique(rounded[:, c], return_counts=True)
        discrete[c], mode[c] = len(values) <= DISCRETE, values[np.argmax(counts)]
    return discrete, mode


def _clipped(points: np.ndarray, clip: float) -> np.ndarray:
    """Per channel: whether it sits at the scaling's clip (most of its points do; a rare
    spike clipped says nothing of its level)."""
    return np.median(np.abs(points), axis=0) >= clip * (1.0 - 1e-6)


def _stretches(points: np.ndarray, length: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per channel of every ``length``-point stretch of
    ``points`` (starting each ``step`` points), ``(stretches, channels)`` each; the whole
    when it is not longer than that."""
    if len(points) <= length:
        return points.mean(axis=0)[None], points.std(axis=0)[None]
    zero = np.zeros((1, points.shape[1]))
    c1 = np.concatenate([zero, np.cumsum(points, axis=0)])
    c2 = np.concatenate([zero, np.cumsum(points * points, axis=0)])
    starts = np.arange(0, len(points) - length + 1, max(1, step))
    mean = (c1[starts + length] - c1[starts]) / length
    var = (c2[starts + length] - c2[starts]) / length - mean * mean
    return mean, np.sqrt(np.maximum(var, 0.0))


def _lag1(points: np.ndarray) -> np.ndarray:
    """Per channel, the lag-1 autocorrelation of ``points`` (0 for a flat channel)."""
    x = points - points.mean(axis=0)
    var = (x * x).sum(axis=0)
    return np.where(var > 0, (x[1:] * x[:-1]).sum(axis=0) / np.where(var > 0, var, 1.0), 0.0)


def _reshaped(points: np.ndarray, ref_points: np.ndarray, step: int) -> np.ndarray:
    """Per channel, whether the alarm's points have another shape than every normal
    stretch as long: their lag-1 autocorrelation outside the stretches' range by more
    than its noise (3 standard errors). A new offset or gain leaves it exactly as it was;
    a sensor stuck near a value, or noise that was not there, does not."""
    length = len(points)
    starts = range(0, max(1, len(ref_points) - length + 1), max(1, step))
    ref = np.array([_lag1(ref_points[s:s + length]) for s in starts])
    ours, margin = _lag1(points), 3.0 / np.sqrt(length)
    return (ours < ref.min(axis=0) - margin) | (ours > ref.max(axis=0) + margin)


def propose(alarm: np.ndarray, normal: np.ndarray | None, hop: int,
            levels_only: bool = False, clip: float = np.inf) -> Rescale | None:
    """The mapping of the ``alarm`` windows' channel levels onto the ``normal`` ones' (or,
    without them, onto the scaling's own: mean 0, spread 1), or None when no channel
    moved (or none that has a spread to map). Levels and spreads are means and standard
    deviations, except for channels discrete in both: their most common value and their
    range (a shift alone where either has one value). ``levels_only``: only channels
    whose level moved (a spread alone varies more from one stretch to the next). With
    ``normal``, a continuous channel moved only if its level (or spread) is also outside
    those of every normal stretch as long as the alarm, and it is mapped onto the stretch
    in the alarm's phase (see the module's docstring). A channel sitting at the scaling's
    ``clip`` in either is never mapped: its level there is unknown, and a mapping judged
    on clipped values would not be the one a change of its raw mean and spread makes."""
    points = _points(alarm, hop)
    channels = points.shape[1]
    loc, scale = points.mean(axis=0), points.std(axis=0)
    outside_level = outside_spread = np.ones(channels, bool)
    clipped = _clipped(points, clip)
    if normal is None:
        ref_loc, ref_scale = np.zeros(channels), np.ones(channels)
        discrete = np.zeros(channels, bool)
    else:
        ref_points = _points(normal, hop)
        clipped |= _clipped(ref_points, clip)
        ref_loc, ref_scale = ref_points.mean(axis=0), ref_points.std(axis=0)
        s_mean, s_std = _stretches(ref_points, len(points), hop)
        # beyond the stretches' range by more than a stretch mean's noise (3 standard errors)
        margin = 3.0 * s_std.mean(axis=0) / np.sqrt(len(points))
        outside_level = ((loc < s_mean.min(axis=0) - margin)
                         | (loc > s_mean.max(axis=0) + margin))
        outside_spread = (scale < s_std.min(axis=0)) | (scale > s_std.max(axis=0))
        (ours, mode), (theirs, ref_mode) = _discrete(points), _discrete(ref_points)
        discrete = ours & theirs
        loc, ref_loc = np.where(discrete, mode, loc), np.where(discrete, ref_mode, ref_loc)
        scale = np.where(discrete, np.ptp(points, axis=0), scale)
        ref_scale = np.where(discrete, np.ptp(ref_points, axis=0), ref_scale)
    flat, ref_flat = scale <= FLAT, ref_scale <= FLAT
    usable = ~flat & ~ref_flat
    ratio = np.where(usable, scale / np.where(usable, ref_scale, 1.0), 1.0)
    gain = usable & ((ratio > MOVED_GAIN) | (ratio < 1.0 / MOVED_GAIN)) & (not levels_only)
    level = (np.abs(loc - ref_loc) > MOVED_LEVEL * ref_scale) & outside_level
    moved = usable & ~discrete & (level | (gain & outside_spread))
    if normal is not None and moved.any():  # a changed shape is no re-scaling
        moved &= ~_reshaped(points, ref_points, hop)
    if normal is not None and len(s_mean) > 1 and moved.any():
        # onto the normal stretch in the alarm's phase: the one whose unmoved continuous
        # channels are nearest the alarm's (none: the whole normal)
        still = usable & ~discrete & ~moved
        if still.any():
            d = (((s_mean[:, still] - loc[still]) / ref_scale[still]) ** 2).sum(axis=1)
            best = int(np.argmin(d))
            keep = moved & (s_std[best] > FLAT)
            ref_loc = np.where(keep, s_mean[best], ref_loc)
            ref_scale = np.where(keep, s_std[best], ref_scale)
    # a channel with one value or a few at another level (a setting, a command line): a
    # shift, and a new range where both have one; a continuous channel flat in only one
    # of them changed its behaviour, which scaling cannot map
    shifted = (discrete | (flat & ref_flat)) & ((np.abs(loc - ref_loc) > MOVED_FLAT) | gain)
    moved, shifted = moved & ~clipped, shifted & ~clipped
    if not (moved | shifted).any():
        return None
    return Rescale(loc, np.where(usable, scale, 1.0), ref_loc, np.where(usable, ref_scale, 1.0),
                   moved | shifted)


def point_scores(model: Detector, windows: np.ndarray, hop: int,
                 memory: np.ndarray | None = None) -> np.ndarray:
    """The model's finite scores of the windows' newest ``hop`` steps; with the novelty
    member on and ``memory`` (a key's normal windows as :func:`~streamae.novelty.features`
    rows), each window's novelty against it joins the score as it does live."""
    novelty = None
    settings = model.calibration.novelty
    if settings.on and memory is not None and len(memory) >= settings.least:
        feats = settings.features(windows)
        novelty = nearest(feats, memory, windows.shape[2])
    scores = model.score(windows, batch_size=1024, novelty=novelty)[0][:, -hop:].ravel()
    return scores[np.isfinite(scores)]


def explains(model: Detector, change: Rescale, alarm: np.ndarray, usual: np.ndarray,
             hop: int, memory: np.ndarray | None = None) -> tuple[bool, float, float]:
    """Whether the alarm windows, re-scaled, score like the key's normal: the 90th
    percentile of their scores (novelty against ``memory`` included, see
    :func:`point_scores`) at most the 99th of ``usual`` (the key's normal scores).
    Returns the verdict and both percentiles."""
    mapped = point_scores(model, change.windows(alarm), hop, memory)
    usual = usual[np.isfinite(usual)]
    if not len(mapped) or not len(usual):
        return False, np.nan, np.nan
    after, normal = float(np.quantile(mapped, 0.9)), float(np.quantile(usual, 0.99))
    return after <= normal, after, normal


def search(model: Detector, alarm: np.ndarray, normal: np.ndarray | None, usual: np.ndarray,
           hop: int, seed: np.ndarray | None = None) -> tuple[Rescale | None, list[str]]:
    """The first mapping onto ``normal`` (None: the training normal) that :func:`explains`
    the alarm, the fewest channels first (those whose level moved, then also those whose
    spread alone did); the mapped windows' novelty is measured against ``normal`` (or the
    key's training memory ``seed``), so an alarm the models would explain but the key
    never did before stays an incident. Returns the mapping (None if none does) and one
    line per mapping tried, the chosen one last."""
    memory = model.calibration.novelty.features(normal) if normal is not None else seed
    tried: list[str] = []
    previous = None
    for levels_only in (True, False):
        change = propose(alarm, normal, hop, levels_only, model.scaler.clip)
        if change is None or (previous is not None and np.array_equal(change.moved, previous)):
            continue
        previous = change.moved
        ok, after, usual_p99 = explains(model, change, alarm, usual, hop, memory)
        names = ", ".join(c for c, m in zip(model.channels, change.moved) if m)
        tried.append(f"{names} onto its {'own' if normal is not None else 'training'} normal: "
                     f"score p90 {after:.3g} {'<=' if ok else '>'} normal p99 {usual_p99:.3g}")
        if ok:
            return change, tried
    return None, tried
