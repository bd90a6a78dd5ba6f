"""Contract every registered model meets: same verbs, safe checkpoints, sane scores."""

import json

import numpy as np
import pytest
import torch

from conftest import small_config
from streamae.errors import ModelError
from streamae.models import MODELS, build_model
from streamae.models.detector import Detector, train_detector


def windows(n=8, w=16, c=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, w, c)).astype(np.float32)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_build_from_one_config_and_shapes(kind):
    config = small_config(kind)
    model = build_model(config.model, 16, 3)
    x = torch.from_numpy(windows())
    recon, reg = model(x)
    assert recon.shape == x.shape and reg.ndim == 0
    assert model.encode(x).shape == (8, config.model.latent)
    with pytest.raises(AssertionError, match="expected windows"):
        model(torch.zeros(2, 15, 3))


def test_score_does_not_mutate_input_and_runs_on_cpu(trained):
    detector, _ = trained
    x = windows()
    before = x.copy()
    step, chan = detector.score(x)
    np.testing.assert_array_equal(x, before)
    assert step.shape == (8, 16) and chan.shape == (8, 16, 3)
    assert next(detector.model.parameters()).device.type == "cpu"
    np.testing.assert_allclose(step, chan.mean(axis=2), rtol=1e-6)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_same_seed_same_model(kind, train_frame):
    config = small_config(kind, **{"train.epochs": 1})
    a = train_detector(train_frame, config)
    b = train_detector(train_frame, config)
    x = windows()
    np.testing.assert_array_equal(a.score(x)[0], b.score(x)[0])
    assert a.version == b.version


def test_save_load_gives_identical_scores(trained, tmp_path):
    detector, _ = trained
    detector.save(tmp_path / "m")
    loaded = Detector.load(tmp_path / "m")
    x = windows()
    np.testing.assert_array_equal(detector.score(x)[0], loaded.score(x)[0])
    np.testing.assert_array_equal(detector.embed(x), loaded.embed(x))
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["channels"] == detector.channels and meta["window"] == 16
    assert set(meta["scaler"]["per_key"]) == {"sensor-0", "sensor-1"}
    assert meta["info"]["windows"] > 0 and meta["version"] == detector.version
    # saving again over an existing checkpoint replaces it whole
    detector.save(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_tampered_or_incomplete_checkpoint_is_refused(trained, tmp_path):
    detector, _ = trained
    path = detector.save(tmp_path / "m")
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        Detector.load(path)
    with pytest.raises(ModelError, match="not a streamae model"):
        Detector.load(tmp_path / "missing")


def test_injected_spike_scores_above_normal(trained, train_frame):
    detector, config = trained
    key = "sensor-0"
    rows = np.flatnonzero(train_frame.keys == key)[-16:]
    mean, std = detector.scaler.stats(key)
    x = detector.scaler.transform(train_frame.values[rows].astype(np.float64), mean, std)[None]
    spiked = x.copy()
    spiked[0, 10, 1] += 8.0
    normal, _ = detector.score(x)
    anomalous, chan = detector.score(spiked)
    assert anomalous[0, 10] > 5 * normal[0, 10]
    assert int(np.argmax(chan[0, 10])) == 1  # attribution names the spiked channel


def test_variational_and_denoising_options_train(train_frame):
    config = small_config("lstm", **{"model.variational": True, "train.noise_std": 0.1,
                                     "train.mask_ratio": 0.1, "train.epochs": 1})
    detector = train_detector(train_frame, config)
    a, _ = detector.score(windows())
    b, _ = detector.score(windows())
    np.testing.assert_array_equal(a, b)  # scoring uses the mean: deterministic
