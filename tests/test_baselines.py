"""Every baseline scores from the past only and ranks an obvious anomaly high."""

import numpy as np
import pytest

from streamae.evaluate.baselines import BASELINES
from streamae.evaluate.metrics import roc_auc
from streamae.types import Frame


def frame(n, spike=None, seed=0):
    rng = np.random.default_rng(seed)
    x = np.sin(np.arange(n) / 6.0)[:, None] + 0.05 * rng.standard_normal((n, 2))
    labels = np.zeros(n, dtype=np.int8)
    if spike is not None:
        x[spike: spike + 3] += 3.0
        labels[spike: spike + 3] = 1
    return Frame(60.0 * np.arange(n), np.full(n, "k", dtype=object), x.astype(np.float32),
                 ["a", "b"], labels)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_ranks_a_spike_high_and_only_uses_the_past(name):
    train, test = frame(800, seed=1), frame(400, spike=300, seed=2)
    model = BASELINES[name]().fit(train)
    score = model.score(test)
    assert roc_auc(test.labels, score) > 0.9
    # scoring a prefix gives the same scores: nothing from the future leaks in
    prefix = test.take(slice(0, 250))
    np.testing.assert_allclose(BASELINES[name]().fit(train).score(prefix), score[:250],
                               equal_nan=True, rtol=1e-6)


def test_a_baseline_whose_package_is_missing_is_refused_before_any_work(monkeypatch):
    import importlib.util

    from streamae.evaluate.report import check_baselines

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real(name, *a))
    check_baselines(["pca", "rolling-zscore"])
    for name in ("isolation-forest", "kmeans"):
        with pytest.raises(ValueError, match="needs scikit-learn.*streamae\\[eval\\]"):
            check_baselines([name])
