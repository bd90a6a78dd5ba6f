"""Simple, well-known detectors run beside the autoencoder on the same rows.

Each baseline learns from training rows, then scores every row of a frame from that
row's past only (per key, event-time order). Their scores go through the same
threshold and alarm stages as the autoencoder's, so the comparison is like for like.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from streamae.models.dataset import autocorrelation, key_series, peak_lag, sliding
from streamae.models.scaler import Scaler
from streamae.types import Frame


def sklearn(path: str, baseline: str) -> Any:
    """A scikit-learn class (an optional dependency) for a baseline that needs it."""
    module, name = path.rsplit(".", 1)
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise ImportError(f"the {baseline} baseline needs scikit-learn: "
                          "pip install 'streamae[eval]'") from None


class Baseline:
    """``fit`` on training rows, ``score`` every row of a frame (nan when it cannot)."""

    name = "baseline"
    needs: str | None = None  # an optional package the baseline imports

    def fit(self, train: Frame) -> Baseline:
        self.scaler = Scaler.fit(train)
        return self

    def score(self, frame: Frame) -> np.ndarray:
        out = np.full(len(frame), np.nan)
        for _, rows, x in key_series(frame, self.scaler):
            out[rows] = self._score_series(x.astype(np.float64))
        return out

    def _score_series(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class RollingZScore(Baseline):
    """Mean squared z-score of each point against the previous ``window`` points."""

    name = "rolling-zscore"

    def __init__(self, window: int = 64) -> None:
        self.window = window

    def _score_series(self, x: np.ndarray) -> np.ndarray:
        w = self.window
        c1 = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), x]), axis=0)
        c2 = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), x * x]), axis=0)
        out = np.full(len(x), np.nan)
        if len(x) <= w:
            return out
        n = w
        s1 = c1[w:-1] - c1[: -w - 1]
        s2 = c2[w:-1] - c2[: -w - 1]
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 1e-6)
        out[w:] = np.mean((x[w:] - mean) ** 2 / var, axis=1)
        return out


class PCAReconstruction(Baseline):
    """Squared residual of the last ``lags`` points after projection on the principal
    components that explain ``variance`` of training windows."""

    name = "pca"

    def __init__(self, lags: int = 16, variance: float = 0.9) -> None:
        self.lags, self.variance = lags, variance

    def fit(self, train: Frame) -> PCAReconstruction:
        super().fit(train)
        mats = [self._lagged(x.astype(np.float64)) for _, _, x in key_series(train, self.scaler)
                if len(x) >= self.lags]
        data = np.concatenate(mats)
        if len(data) > 20000:
            data = data[np.linspace(0, len(data) - 1, 20000).astype(int)]
        self._fit_projection(data)
        return self

    def _fit_projection(self, data: np.ndarray) -> None:
        self.center = data.mean(axis=0)
        centred = data - self.center
        try:
            _, s, vt = np.linalg.svd(centred, full_matrices=False)
            power = s ** 2
        except np.linalg.LinAlgError:  # LAPACK gives up on some degenerate matrices
            power, vectors = np.linalg.eigh(centred.T @ centred)
            power, vt = np.maximum(power[::-1], 0.0), vectors[:, ::-1].T
        share = np.cumsum(power) / max(np.sum(power), 1e-12)
        k = int(np.searchsorted(share, self.variance) + 1)
        self.components = vt[: min(k, len(vt))]

    def _lagged(self, x: np.ndarray) -> np.ndarray:
        view = sliding(x, self.lags)
        return view.reshape(len(view), -1)

    def _score_series(self, x: np.ndarray) -> np.ndarray:
        out = np.full(len(x), np.nan)
        if len(x) < self.lags:
            return out
        z = self._lagged(x) - self.center
        resid = z - (z @ self.components.T) @ self.components
        out[self.lags - 1:] = np.mean(resid ** 2, axis=1)
        return out


class IsolationForest(PCAReconstruction):
    """scikit-learn's IsolationForest on lagged windows of the last ``lags`` points,
    fitted on training windows (optional dependency: ``pip install streamae[eval]``)."""

    name = "isolation-forest"
    needs = "sklearn"

    def __init__(self, lags: int = 16, trees: int = 100, seed: int = 0) -> None:
        super().__init__(lags)
        self.trees, self.seed = trees, seed

    def fit(self, train: Frame) -> IsolationForest:
        Forest = sklearn("sklearn.ensemble.IsolationForest", self.name)
        super().fit(train)  # scaler + lagged training windows
        self.forest = Forest(n_estimators=self.trees, random_state=self.seed)
        self.forest.fit(self._training)
        return self

    def _fit_projection(self, data: np.ndarray) -> None:
        self._training = data

    def _score_series(self, x: np.ndarray) -> np.ndarray:
        out = np.full(len(x), np.nan)
        if len(x) >= self.lags:
            out[self.lags - 1:] = -self.forest.score_samples(self._lagged(x))
        return out


class KMeansDistance(Baseline):
    """Distance to the nearest of ``k`` k-means centroids of z-normalised subsequences
    (each window of the last ``w`` points, all channels, standardised on its own), fitted
    on training windows; ``w`` is the dominant period of a univariate series (3..300,
    else 64) and 20 for several channels. One model per training key (optional dependency:
    scikit-learn)."""

    name = "kmeans"
    needs = "sklearn"

    def __init__(self, k: int = 20, seed: int = 0) -> None:
        self.k, self.seed = k, seed

    def fit(self, train: Frame) -> KMeansDistance:
        KMeans = sklearn("sklearn.cluster.KMeans", self.name)
        super().fit(train)
        self.models: dict[str, tuple[int, object]] = {}
        series = {key: x.astype(np.float64) for key, _, x in key_series(train, self.scaler)}
        for key, x in [*series.items(), ("", None)]:
            if x is None:  # the global model, for keys not seen in training
                x = np.concatenate(list(series.values()))
            w = 20 if x.shape[1] > 1 else dominant_period_of(x[:, 0])
            if len(x) < w + self.k:
                continue
            data = self._subsequences(x, w)
            if len(data) > 20_000:
                data = data[np.linspace(0, len(data) - 1, 20_000).astype(int)]
            self.models[key] = (w, KMeans(self.k, n_init=1, random_state=self.seed).fit(data))
        return self

    @staticmethod
    def _subsequences(x: np.ndarray, w: int) -> np.ndarray:
        flat = sliding(x, w).reshape(len(x) - w + 1, -1)
        spread = flat.std(axis=1, keepdims=True)
        return (flat - flat.mean(axis=1, keepdims=True)) / np.maximum(spread, 1e-8)

    def score(self, frame: Frame) -> np.ndarray:
        out = np.full(len(frame), np.nan)
        for key, rows, x in key_series(frame, self.scaler):
            w, model = self.models.get(key) or self.models[""]
            if len(x) >= w:
                dist = model.transform(self._subsequences(x.astype(np.float64), w)).min(axis=1)
                out[rows[w - 1:]] = dist
        return out


def dominant_period_of(x: np.ndarray, low: int = 3, high: int = 300, fallback: int = 64) -> int:
    """Highest autocorrelation peak of a univariate series in ``low..high`` lags."""
    x = np.asarray(x, dtype=np.float64)[:20_000].reshape(-1, 1)
    ac = autocorrelation(x, high) if len(x) >= 2 * high else None
    lag = peak_lag(ac, low, high) if ac is not None else None
    return lag if lag is not None else fallback


class HalfSpaceTrees(Baseline):
    """river's HalfSpaceTrees on each point's scaled channel values (learns as it scores)."""

    name = "half-space-trees"

    def __init__(self, n_trees: int = 10, height: int = 8, window_size: int = 250,
                 seed: int = 0) -> None:
        self.n_trees, self.height, self.window_size, self.seed = n_trees, height, window_size, seed

    def fit(self, train: Frame) -> HalfSpaceTrees:
        super().fit(train)
        self.train = train
        return self

    def _score_series(self, x: np.ndarray) -> np.ndarray:
        from river.anomaly import HalfSpaceTrees as HST

        # river expects features in [0, 1]: map scaled values (-CLIP..CLIP) there.
        unit = np.clip((x + 4.0) / 8.0, 0.0, 1.0)
        model = HST(n_trees=self.n_trees, height=self.height, window_size=self.window_size,
                    seed=self.seed)
        names = [f"c{j}" for j in range(x.shape[1])]
        out = np.empty(len(x))
        for i, row in enumerate(unit):
            point = dict(zip(names, row.tolist()))
            out[i] = model.score_one(point)
            model.learn_one(point)
        # until its first reference window is full the model answers 0 for every point:
        # that is warm-up, not a score (a threshold learnt on it would be 0)
        out[: self.window_size] = np.nan
        return out


BASELINES: dict[str, type[Baseline]] = {
    b.name: b for b in (RollingZScore, PCAReconstruction, IsolationForest,  # type: ignore[misc]
                        KMeansDistance, HalfSpaceTrees)
}
