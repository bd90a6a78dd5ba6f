"""Calibrated scores: per-channel errors standardised against normal held-out data.

A model gives squared errors per head (reconstruction, forecast), step and channel. The
calibration turns them into one score per step:

1. ``z = (|err| - loc) / scale`` per head and channel, with ``loc``/``scale`` the median
   and IQR-based spread of that head's and channel's absolute errors on held-out normal
   windows; the spread is floored at ``floor`` x the median channel's (among channels whose
   errors vary at all), so a channel that was constant in training neither blows up nor
   vanishes when it moves;
2. per member, the mean over its heads, then the mean of the newest ``smooth`` steps;
3. across channels: the mean of the ``top_k`` largest (or mean, max, Mahalanobis);
4. each member's score standardised by its own held-out median and spread, and the
   members' scores averaged; the key's novelty (:mod:`streamae.novelty`: a window's
   distance to its key's nearest earlier window), standardised the same way, carries
   ``novelty.weight`` of the score beside the models' average (typical, 0, where it is
   not known): what training says and what the key's own history says.

Per-channel ``contrib`` (the positive part of step 2, and the novelty's per-channel
share, averaged over members) says which channels a score comes from. ``sample`` holds held-out scores: a threshold has them at once
for a key with no history yet (``key_samples`` for keys seen in training).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamae.novelty import NoveltySettings

log = logging.getLogger(__name__)

SAMPLE = 5000  # held-out scores kept for thresholds
KEY_SAMPLE = 1000  # per key seen in training
IQR_TO_STD = 1.349
NOVELTY_LEAST = 20  # known held-out novelty distances needed to standardise them


@dataclass
class ModelsPart:
    """Windows' scores before the novelty joins: the sum of the model members'
    standardised scores ``(B, steps)`` and of their channel contributions
    ``(B, steps, C)`` over the newest steps of windows of ``width``."""

    total: np.ndarray
    contrib: np.ndarray
    members: int
    width: int

    def take(self, idx: np.ndarray) -> ModelsPart:
        return ModelsPart(self.total[idx], self.contrib[idx], self.members, self.width)


@dataclass
class Calibration:
    """Fitted statistics and settings (see the module docstring)."""

    groups: list[list[int]]
    loc: np.ndarray
    scale: np.ndarray
    member_loc: np.ndarray
    member_scale: np.ndarray
    aggregate: str = "topk"
    top_k: int = 0
    smooth: int = 8
    hop: int = 8
    floor: float = 0.1
    per_channel: bool = True
    precision: np.ndarray | None = None
    sample: np.ndarray = field(default_factory=lambda: np.zeros(0))
    key_samples: dict[str, np.ndarray] = field(default_factory=dict)
    novelty: NoveltySettings = field(default_factory=NoveltySettings)
    novelty_loc: float = 0.0
    novelty_scale: float = 1.0
    novelty_seeds: dict[str, np.ndarray] = field(default_factory=dict)

    # ------------------------------------------------------------------ scoring
    def score(self, errors: np.ndarray, newest: int | None = None,
              novelty: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """``errors`` ``(heads, B, W, C)`` -> scores ``(B, W)`` and contributions ``(B, W, C)``.
        With ``newest``, only the newest that many steps are scored (the rest are nan):
        what the pipeline needs, at a fraction of the work. ``novelty``: each window's
        distance to its key's nearest earlier window and the channels' shares of it (see
        :mod:`streamae.novelty`), weighted against the models' average; where it is not
        known (nan, or not given) it counts as typical, so scores keep one scale either
        way."""
        return self.finish(self.models_part(errors, newest), novelty)

    def models_part(self, errors: np.ndarray, newest: int | None = None) -> ModelsPart:
        """The models' members of :meth:`score`, summed, before the novelty joins."""
        h, b, w, c = errors.shape
        keep = w if newest is None else min(w, newest + self.smooth - 1)
        members = self.member_z(errors[:, :, w - keep:])
        total = np.zeros((b, keep), dtype=np.float32)
        contrib = np.zeros((b, keep, c), dtype=np.float32)
        for m, z in enumerate(members):
            total += (self._aggregate(z, m) - self.member_loc[m]) / self.member_scale[m]
            contrib += np.maximum(z, 0.0)
        return ModelsPart(total, contrib, len(members), w)

    def finish(self, part: ModelsPart, novelty: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score` from the models' part and the windows' novelty."""
        share = self.novelty.weight if self.novelty.on else 0.0
        total = part.total * np.float32((1.0 - share) / part.members)
        contrib = part.contrib * np.float32((1.0 - share) / part.members)
        if share and novelty is not None:  # unknown novelty counts as typical (0)
            z = self.novelty_z(novelty[0])
            given = np.isfinite(z)
            total[given] += share * z[given, None]
            contrib[given] += (share * np.maximum(z[given], 0.0)[:, None]
                               * novelty[1][given])[:, None, :].astype(np.float32)
        b, keep = total.shape
        w = part.width
        if keep == w:
            return total, contrib
        score = np.full((b, w), np.nan, dtype=np.float32)
        out = np.full((b, w, contrib.shape[2]), np.nan, dtype=np.float32)
        score[:, w - keep:], out[:, w - keep:] = total, contrib
        return score, out

    def novelty_z(self, distance: np.ndarray) -> np.ndarray:
        """Novelty distances on the members' scale (nan stays nan)."""
        return ((np.asarray(distance, dtype=np.float64) - self.novelty_loc)
                / self.novelty_scale).astype(np.float32)

    def member_z(self, errors: np.ndarray) -> list[np.ndarray]:
        """Per member: calibrated, smoothed per-channel errors ``(B, steps, C)`` (of the
        steps given; the first ``smooth - 1`` of them see fewer steps before them)."""
        loc = self.loc.astype(np.float32)[:, None, None, :]
        scale = self.scale.astype(np.float32)[:, None, None, :]
        z = (np.sqrt(errors.astype(np.float32)) - loc) / scale
        out = []
        for heads in self.groups:
            part = z[heads]
            if len(heads) == 1:
                mean = part[0]
            elif np.isnan(part[:, :, :1]).any():  # a forecast has no error at step 0
                finite = np.isfinite(part)
                mean = np.where(finite, part, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)
            else:
                mean = part.mean(axis=0)
            out.append(trailing_mean(mean, self.smooth))
        return out

    def _aggregate(self, z: np.ndarray, member: int) -> np.ndarray:
        c = z.shape[-1]
        if self.aggregate == "mean" or c == 1:
            return z.mean(axis=-1)
        if self.aggregate == "max":
            return z.max(axis=-1)
        if self.aggregate == "mahalanobis":
            assert self.precision is not None, "mahalanobis needs a fitted precision"
            return np.einsum("bwi,ij,bwj->bw", z, self.precision[member], z) / c
        k = self.top_k or int(np.ceil(np.sqrt(c)))
        return -np.mean(np.partition(-z, k - 1, axis=-1)[..., :k], axis=-1)

    # ------------------------------------------------------------------ fitting
    def refit(self, errors: np.ndarray, keys: np.ndarray,
              novelty: np.ndarray | None = None) -> Calibration:
        """The same settings fitted to other held-out errors (a new model version's).
        The novelty keeps its standardisation (it does not depend on the model);
        ``novelty``: the windows' distances, which join the held-out scores (without
        them those are the models' alone)."""
        cal = Calibration.fit(errors, keys, self.groups, self.hop, self.aggregate,
                              self.top_k, self.smooth, self.floor, self.per_channel,
                              self.novelty, novelty, (self.novelty_loc, self.novelty_scale))
        cal.novelty_seeds = self.novelty_seeds
        return cal

    @staticmethod
    def fit(errors: np.ndarray, keys: np.ndarray, groups: list[list[int]], hop: int,
            aggregate: str = "topk", top_k: int = 0, smooth: int = 8,
            floor: float = 0.1, per_channel: bool = True,
            novelty_settings: NoveltySettings | None = None,
            novelty: np.ndarray | None = None,
            novelty_scaling: tuple[float, float] | None = None) -> Calibration:
        """Fit on held-out normal windows' errors ``(heads, n, W, C)`` (``keys`` per window,
        windows of a key in time order). Statistics use the newest ``hop`` steps, the ones
        the pipeline scores. ``novelty``: the windows' novelty distances (nan where a
        key remembered too little), standardised by their median and spread, or by
        ``novelty_scaling`` (location, scale) when given; with fewer than
        :data:`NOVELTY_LEAST` known distances to fit on, the novelty member is off."""
        h, n, w, c = errors.shape
        hop = min(hop, w)
        absolute = np.sqrt(errors[:, :, w - hop:].astype(np.float64)).reshape(h, -1, c)
        if not per_channel:  # one location and spread per head, shared by its channels
            absolute = np.broadcast_to(absolute.reshape(h, -1, 1), (h, absolute.shape[1] * c, c))
        q1, loc, q3 = np.nanpercentile(absolute, [25, 50, 75], axis=1)
        spread = (q3 - q1) / IQR_TO_STD
        # the typical channel among those whose errors vary at all: a head may leave most
        # channels (constant in training) with none, and the floor must stay relative
        typical = np.array([[np.median(row[row > 0]) if (row > 0).any() else 0.0]
                            for row in spread])
        scale = np.maximum(spread, np.maximum(floor * typical, 1e-3))
        m = len(groups)
        cal = Calibration(groups, np.nan_to_num(loc), np.nan_to_num(scale, nan=1.0),
                          np.zeros(m), np.ones(m), aggregate, top_k, smooth, hop, floor,
                          per_channel, novelty=novelty_settings or NoveltySettings())
        known = novelty[np.isfinite(novelty)] if novelty is not None else np.zeros(0)
        if novelty_scaling is not None:
            cal.novelty_loc, cal.novelty_scale = novelty_scaling
        elif cal.novelty.on and len(known) >= NOVELTY_LEAST:
            p25, med, p75 = np.percentile(known, [25, 50, 75])
            cal.novelty_loc = float(med)
            spread = float(p75 - p25) / IQR_TO_STD  # all alike: the spread, floored
            cal.novelty_scale = spread if spread > 1e-6 else max(float(np.std(known)), 1e-3)
        elif cal.novelty.on:
            log.warning("novelty off: %d held-out windows had a novelty distance, %d "
                        "needed to standardise it (more training data per key, or a "
                        "smaller novelty.least)", len(known), NOVELTY_LEAST)
            cal.novelty = dataclasses.replace(cal.novelty, size=0)
        members = [z[:, w - hop:] for z in cal.member_z(errors)]
        if aggregate == "mahalanobis":
            cal.precision = np.stack([_precision(z.reshape(-1, c)) for z in members])
        for i, z in enumerate(members):
            raw = cal._aggregate(z, i).ravel()
            p25, med, p75 = np.percentile(raw, [25, 50, 75])
            cal.member_loc[i] = med
            cal.member_scale[i] = max((p75 - p25) / IQR_TO_STD, 1e-6)
        given = None
        if novelty is not None:
            given = (np.asarray(novelty, dtype=np.float64), np.zeros((n, c), np.float32))
        scores, _ = cal.score(errors, novelty=given)
        newest = scores[:, w - hop:]  # (n, hop): per window, in time order
        cal.sample = _thin(newest.ravel(), SAMPLE)
        for key in np.unique(keys):
            cal.key_samples[str(key)] = newest[keys == key].ravel()[-KEY_SAMPLE:]
        return cal

    def sample_for(self, key: str) -> np.ndarray:
        """Held-out scores a new key's threshold starts from (its own when it had some)."""
        own = self.key_samples.get(key)
        return own if own is not None and len(own) >= 50 else self.sample

    # ------------------------------------------------------------------ checkpoint
    def arrays(self) -> dict[str, np.ndarray]:
        out = {"loc": self.loc, "scale": self.scale, "member_loc": self.member_loc,
               "member_scale": self.member_scale, "sample": self.sample,
               "novelty": np.array([self.novelty_loc, self.novelty_scale])}
        if self.precision is not None:
            out["precision"] = self.precision
        keys = sorted(self.key_samples)
        out["key_sample_sizes"] = np.array([len(self.key_samples[k]) for k in keys])
        out["key_samples"] = (np.concatenate([self.key_samples[k] for k in keys])
                              if keys else np.zeros(0))
        out = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in out.items()}
        seeded = sorted(self.novelty_seeds)
        out["novelty_seed_sizes"] = np.array([len(self.novelty_seeds[k]) for k in seeded],
                                             dtype=np.float64)
        out["novelty_seeds"] = np.ascontiguousarray(  # remembered windows: float32 as kept
            np.concatenate([self.novelty_seeds[k].reshape(-1) for k in seeded])
            if seeded else np.zeros(0), dtype=np.float32)
        return out

    def meta(self) -> dict[str, Any]:
        return {"groups": self.groups, "aggregate": self.aggregate, "top_k": self.top_k,
                "smooth": self.smooth, "hop": self.hop, "floor": self.floor,
                "per_channel": self.per_channel, "keys": sorted(self.key_samples),
                "novelty": dataclasses.asdict(self.novelty),
                "novelty_seeded": sorted(self.novelty_seeds)}

    @staticmethod
    def restore(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Calibration:
        sizes = arrays["key_sample_sizes"].astype(np.int64)
        bounds = np.cumsum(np.r_[0, sizes])
        samples = {k: arrays["key_samples"][a:b]
                   for k, a, b in zip(meta["keys"], bounds[:-1], bounds[1:])}
        novelty = arrays.get("novelty", np.array([0.0, 1.0]))
        sizes = arrays.get("novelty_seed_sizes", np.zeros(0)).astype(np.int64)
        flat = arrays.get("novelty_seeds", np.zeros(0, np.float32))
        width = len(flat) // max(int(sizes.sum()), 1)
        bounds = np.cumsum(np.r_[0, sizes]) * width
        seeds = {k: flat[a:b].reshape(-1, width) for k, a, b in  # none when all empty
                 zip(meta.get("novelty_seeded", []), bounds[:-1], bounds[1:])} if width else {}
        return Calibration([list(g) for g in meta["groups"]], arrays["loc"], arrays["scale"],
                           arrays["member_loc"], arrays["member_scale"], meta["aggregate"],
                           int(meta["top_k"]), int(meta["smooth"]), int(meta["hop"]),
                           float(meta["floor"]), bool(meta["per_channel"]),
                           arrays.get("precision"), arrays["sample"], samples,
                           NoveltySettings(**meta.get("novelty", {})), float(novelty[0]),
                           float(novelty[1]), seeds)


def trailing_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of the newest ``n`` steps along axis 1 (fewer at the start of a window)."""
    if n <= 1:
        return x
    c = np.cumsum(x, axis=1)
    out = c.copy()
    out[:, n:] -= c[:, :-n]
    counts = np.minimum(np.arange(1, x.shape[1] + 1), n)
    return out / counts.reshape(1, -1, *([1] * (x.ndim - 2)))


def _thin(x: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` values, evenly spaced (order kept)."""
    if len(x) <= n:
        return x.copy()
    return x[np.linspace(0, len(x) - 1, n).round().astype(np.int64)]


def _precision(z: np.ndarray) -> np.ndarray:
    cov = np.cov(z, rowvar=False).reshape(z.shape[1], z.shape[1])
    ridge = 1e-3 * max(float(np.trace(cov)) / len(cov), 1e-6)
    return np.linalg.pinv(cov + ridge * np.eye(len(cov)))
