"""Seeded synthetic multi-sensor telemetry with injected, labelled anomalies.

Each key is a machine with correlated channels: a daily and weekly cycle, a slow trend
and noise. Anomalies hit a few channels of one key over a segment and are labelled 1.
Regime changes (drift) alter the signal without labels: they are new normal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamae.types import Frame

ANOMALY_KINDS = ("spike", "level_shift", "variance_burst", "frequency_change", "stuck")
REGIME_KINDS = ("level", "variance", "season")


@dataclass(frozen=True)
class Injected:
    """One injected anomaly: which key, rows [start, stop), kind and channels."""

    key: str
    start: int
    stop: int
    kind: str
    channels: tuple[int, ...]


@dataclass(frozen=True)
class Regime:
    """A change of normal behaviour from row ``start`` to ``stop`` (per key)."""

    start: int
    stop: int
    kind: str
    strength: float = 3.0


@dataclass
class SyntheticSet:
    """Generated frame plus what was injected where."""

    frame: Frame
    anomalies: list[Injected] = field(default_factory=list)


def generate(n_points: int = 5000, keys: int = 3, channels: int = 4, step_s: float = 60.0,
             anomalies_per_key: int = 4, anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS,
             regimes: tuple[Regime, ...] = (), start: float = 1_700_000_000.0,
             clean_head: int = 0, seed: int = 0) -> SyntheticSet:
    """Generate ``keys`` series of ``n_points`` rows each, interleaved in time order.

    ``clean_head`` rows at the start of every key carry no anomaly (a training part).

    Examples
    --------
    >>> s = generate(n_points=500, keys=2, channels=3, seed=1)
    >>> len(s.frame), s.frame.values.shape[1], int(s.frame.labels.sum()) > 0
    (1000, 3, True)
    """
    for kind in anomaly_kinds:
        if kind not in ANOMALY_KINDS:
            raise ValueError(f"unknown anomaly kind {kind!r}; allowed: {', '.join(ANOMALY_KINDS)}")
    rng = np.random.default_rng(seed)
    t = np.arange(n_points)
    day = 86400.0 / step_s
    values = np.empty((keys, n_points, channels), dtype=np.float64)
    labels = np.zeros((keys, n_points), dtype=np.int8)
    injected: list[Injected] = []
    for k in range(keys):
        values[k] = _normal_signal(rng, t, day, channels)
        for regime in regimes:
            _apply_regime(values[k], regime, t, day)
        free_from = max(clean_head, 64)
        for _ in range(anomalies_per_key):
            kind = str(rng.choice(anomaly_kinds))
            length = 1 if kind == "spike" else int(rng.integers(20, 80))
            if free_from + length >= n_points:
                break
            begin = int(rng.integers(free_from, n_points - length))
            if labels[k, max(0, begin - 100): begin + length + 100].any():
                continue
            chans = tuple(sorted(rng.choice(channels, size=max(1, channels // 3), replace=False)))
            _inject(values[k], kind, begin, begin + length, chans, rng, day)
            labels[k, begin: begin + length] = 1
            injected.append(Injected(f"sensor-{k}", begin, begin + length, kind, chans))
    stamps = start + t * step_s
    frame = Frame(
        timestamps=np.tile(stamps, keys).reshape(keys, n_points).T.ravel().astype(np.float64),
        keys=np.array([f"sensor-{k}" for k in range(keys)] * n_points, dtype=object),
        values=values.transpose(1, 0, 2).reshape(-1, channels).astype(np.float32),
        channels=[f"ch{c}" for c in range(channels)],
        labels=labels.T.ravel(),
    )
    injected.sort(key=lambda a: (a.start, a.key))
    return SyntheticSet(frame, injected)


def _normal_signal(rng: np.random.Generator, t: np.ndarray, day: float, channels: int) -> np.ndarray:
    base_phase = rng.uniform(0, 2 * np.pi)
    daily = np.sin(2 * np.pi * t / day + base_phase)
    weekly = np.sin(2 * np.pi * t / (7 * day))
    fast = np.sin(2 * np.pi * t / (day / 24) + rng.uniform(0, 2 * np.pi))
    out = np.empty((len(t), channels))
    for c in range(channels):
        level = rng.uniform(10, 100)
        amp = level * rng.uniform(0.1, 0.3)
        out[:, c] = (level + amp * (daily * rng.uniform(0.6, 1.0) + 0.3 * weekly + 0.4 * fast)
                     + level * 0.02 * t / len(t) + rng.normal(0, amp * 0.08, len(t)))
    return out


def _apply_regime(x: np.ndarray, regime: Regime, t: np.ndarray, day: float) -> None:
    seg = slice(regime.start, regime.stop)
    scale = x.std(axis=0)
    if regime.kind == "level":
        x[seg] += regime.strength * scale
    elif regime.kind == "variance":
        mean = x[seg].mean(axis=0)
        x[seg] = mean + (x[seg] - mean) * regime.strength
    elif regime.kind == "season":
        x[seg] += regime.strength * 0.5 * scale * np.sin(2 * np.pi * t[seg] / (day / 8))[:, None]
    else:
        raise ValueError(f"unknown regime kind {regime.kind!r}; allowed: {', '.join(REGIME_KINDS)}")


def _inject(x: np.ndarray, kind: str, begin: int, end: int, chans: tuple[int, ...],
            rng: np.random.Generator, day: float) -> None:
    cols = list(chans)
    seg = slice(begin, end)
    scale = x[:, cols].std(axis=0)
    if kind == "spike":
        x[seg, cols] += rng.choice([-1, 1]) * rng.uniform(4, 8) * scale
    elif kind == "level_shift":
        x[seg, cols] += rng.choice([-1, 1]) * rng.uniform(1.0, 2.0) * scale
    elif kind == "variance_burst":
        x[seg, cols] += rng.normal(0, 1.5, (end - begin, len(cols))) * scale
    elif kind == "frequency_change":
        t = np.arange(end - begin)
        x[seg, cols] += 0.8 * scale * np.sin(2 * np.pi * t / 6.0)[:, None]
    elif kind == "stuck":
        x[seg, cols] = x[begin, cols]
