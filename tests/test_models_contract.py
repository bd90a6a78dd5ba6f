"""Contract every registered model and the calibration meet: same verbs, safe
checkpoints, reproducible, sane calibrated scores."""

import json

import numpy as np
import pytest
import torch

from conftest import small_config
from streamae.errors import ModelError
from streamae.models import MODELS, build_model
from streamae.models.calibration import Calibration, trailing_mean
from streamae.models.detector import Detector, train_detector
from streamae.synth import generate
from streamae.types import Frame


def windows(n=8, w=16, c=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, w, c)).astype(np.float32)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_build_from_one_config_errors_and_loss(kind):
    config = small_config(kind)
    model = build_model(config.model, 16, 3)
    x = torch.from_numpy(windows())
    err = model.errors(x)
    assert err.shape == (len(model.heads), 8, 16, 3)
    assert torch.isfinite(err[:, :, 1:]).all()
    assert model.loss(x, x).ndim == 0
    assert model.encode(x).shape[0] == 8
    with pytest.raises(AssertionError, match="expected windows"):
        model.errors(torch.zeros(2, 15, 3))


def test_score_does_not_mutate_input_and_runs_on_cpu(trained):
    detector, _ = trained
    x = windows()
    before = x.copy()
    step, chan = detector.score(x)
    np.testing.assert_array_equal(x, before)
    assert step.shape == (8, 16) and chan.shape == (8, 16, 3)
    assert (chan >= 0).all() and np.isfinite(step).all()
    assert next(detector.model.parameters()).device.type == "cpu"


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
    np.testing.assert_array_equal(detector.score(x)[1], loaded.score(x)[1])
    np.testing.assert_array_equal(detector.embed(x), loaded.embed(x))
    np.testing.assert_array_equal(detector.calibration.sample_for("sensor-0"),
                                  loaded.calibration.sample_for("sensor-0"))
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["channels"] == detector.channels and meta["window"] == 16
    assert set(meta["scaler"]["per_key"]) == {"sensor-0", "sensor-1"}
    assert meta["info"]["windows"] > 0 and meta["version"] == detector.version
    assert meta["info"]["holdout_windows"] > 0
    # saving again over an existing checkpoint replaces it whole
    detector.save(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize("name", ["model.safetensors", "calibration.safetensors"])
def test_tampered_or_incomplete_checkpoint_is_refused(trained, tmp_path, name):
    detector, _ = trained
    path = detector.save(tmp_path / "m")
    target = path / name
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
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
    spiked[0, 11, 1] += 8.0
    normal, _ = detector.score(x)
    anomalous, chan = detector.score(spiked)
    # scores average the newest calibration.smooth steps: the spike shows from step 11 on
    peak = 11 + int(np.argmax(anomalous[0, 11:]))
    assert anomalous[0, peak] > normal[0, peak] + 1.0
    assert anomalous[0, peak] > np.quantile(detector.calibration.sample, 0.99)
    assert int(np.argmax(chan[0, peak])) == 1  # attribution names the spiked channel


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_channel_constant_in_training_that_moves_is_flagged_without_drowning_the_rest(kind):
    """Channel 2 never moves in training. When it moves, the score rises and names it, but
    it does not mask the others: a spike in another channel at the same time still raises
    the score and is named beside it (the constant channel's spread is floored, not ~0)."""
    base = generate(n_points=1200, keys=1, channels=3, step_s=432.0, clean_head=1200,
                    seed=4).frame
    values = base.values.copy()
    values[:, 2] = 5.0
    frame = Frame(base.timestamps, base.keys, values, base.channels)
    detector = train_detector(frame, small_config(kind))
    mean, std = detector.scaler.stats("series")
    x = detector.scaler.transform(values[-16:].astype(np.float64), mean, std)[None]
    moved = x.copy()
    moved[0, 10:, 2] += 3.0
    both = moved.copy()
    both[0, 12, 0] += 6.0
    flagged, chan = detector.score(moved)
    assert flagged[0, 13] > np.quantile(detector.calibration.sample, 0.99)
    assert int(np.argmax(chan[0, 13])) == 2
    score_both, chan_both = detector.score(both)
    assert score_both[0, 13] > flagged[0, 13] + 0.5
    assert set(np.argsort(-chan_both[0, 13])[:2]) == {0, 2}
    assert np.isfinite(flagged).all() and flagged[0, 13] < 1e3


def test_calibration_standardises_held_out_errors_and_keeps_shape():
    rng = np.random.default_rng(0)
    # two heads of one member, 4 channels on very different error scales
    errors = rng.chisquare(1, size=(2, 500, 16, 4)) * np.array([1e-3, 1.0, 10.0, 1e-6])
    keys = np.repeat(np.array(["a", "b"], dtype=object), 250)
    cal = Calibration.fit(errors, keys, [[0, 1]], hop=4, aggregate="mean", smooth=1)
    z = cal.member_z(errors)[0][:, -4:]
    assert np.allclose(np.median(z, axis=(0, 1)), 0.0, atol=0.2)  # each channel centred
    score, contrib = cal.score(errors)
    assert score.shape == (500, 16) and contrib.shape == (500, 16, 4)
    assert abs(np.median(score[:, -4:])) < 0.1 and 0.5 < np.std(score[:, -4:]) < 3.0
    assert len(cal.sample_for("a")) > 0 and len(cal.sample_for("zzz")) == len(cal.sample)
    restored = Calibration.restore(cal.meta(), cal.arrays())
    np.testing.assert_array_equal(restored.score(errors)[0], score)


def test_the_spread_floor_follows_the_channels_whose_errors_vary():
    """A head that leaves most channels (constant in training) with no error at all still
    floors them at a share of the varying channels' spread, not at an absolute 1e-3."""
    rng = np.random.default_rng(2)
    errors = np.zeros((1, 400, 8, 6))
    errors[..., :2] = rng.chisquare(1, size=(1, 400, 8, 2))  # 2 channels vary, 4 never err
    cal = Calibration.fit(errors, np.full(400, "k", dtype=object), [[0]], hop=8, floor=0.1)
    varying = cal.scale[0, :2]
    assert np.allclose(cal.scale[0, 2:], 0.1 * np.median(varying), rtol=0.05)  # not 1e-3


@pytest.mark.parametrize("aggregate", ["topk", "mean", "max", "mahalanobis"])
def test_every_aggregate_ranks_an_outlier_first(aggregate):
    rng = np.random.default_rng(1)
    errors = rng.chisquare(1, size=(1, 400, 8, 5))
    cal = Calibration.fit(errors, np.full(400, "k", dtype=object), [[0]], hop=8,
                          aggregate=aggregate, smooth=2)
    probe = rng.chisquare(1, size=(1, 50, 8, 5))
    probe[0, 7, -1, 3] = 400.0
    score, _ = cal.score(probe)
    assert int(np.argmax(score[:, -1])) == 7


def test_trailing_mean_is_the_mean_of_the_newest_steps():
    x = np.arange(12, dtype=float).reshape(1, 6, 2)
    out = trailing_mean(x, 3)
    np.testing.assert_allclose(out[0, 4], x[0, 2:5].mean(axis=0))
    np.testing.assert_allclose(out[0, 0], x[0, 0])


def test_linear_autoencoder_is_the_principal_components_fit():
    config = small_config("linear", **{"model.components": 3, "model.variance": 0.99})
    model = build_model(config.model, 4, 2)
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(500, 3))
    data = (latent @ rng.normal(size=(3, 8)) + 0.01 * rng.normal(size=(500, 8)))
    assert model.fit_closed(data.reshape(500, 4, 2).astype(np.float32))
    recon = model(torch.from_numpy(data.reshape(500, 4, 2).astype(np.float32))).reconstruction
    assert float(torch.mean((recon - torch.from_numpy(data.reshape(500, 4, 2)).float()) ** 2)) < 1e-3
    assert int(model.active.sum()) == 3



def _sine_windows(level: float = 0.0, n: int = 400) -> np.ndarray:
    """Windows (n, 16, 2): channel 0 a sine of random phase around ``level``, channel 1
    noise around 0."""
    rng = np.random.default_rng(0)
    steps = np.arange(16)
    sine = np.sin(2 * np.pi * (steps[None, :] / 16 + rng.uniform(size=(n, 1)))) + level
    noise = 0.1 * rng.normal(size=(n, 16))
    return np.stack([sine, noise], axis=-1).astype(np.float32)


def test_linear_codes_are_held_to_the_range_training_gave_them():
    config = small_config("linear", **{"model.components": 8, "model.variance": 0.999})
    model = build_model(config.model, 16, 2)
    train = _sine_windows(0.0)
    train[:, :, 0] += np.random.default_rng(1).normal(scale=0.3, size=(len(train), 1))
    model.fit_closed(train)
    model.bound(train)
    normal, far = _sine_windows(0.0, 50), _sine_windows(6.0, 50)  # a level never seen
    err_normal = model.errors(torch.from_numpy(normal))[0].numpy()
    err_far = model.errors(torch.from_numpy(far))[0].numpy()
    # the level lies in the components' span: unbounded, it would be reconstructed
    assert err_far[..., 0].mean() > 100 * err_normal[..., 0].mean()
    assert err_far[..., 0].mean() > 10  # about (6 - the largest level seen) squared
    assert err_far[..., 1].mean() < 10 * err_normal[..., 1].mean() + 1e-3  # only its channel
    unbounded = build_model(config.model, 16, 2)
    unbounded.fit_closed(train)
    assert float(unbounded.errors(torch.from_numpy(far))[0, ..., 0].mean()) < 0.1


def test_training_holds_codes_to_the_windows_it_is_told_reach():
    """A fine-tune early-stops on its newest windows but bounds its codes on all it was
    given: a level only those newest windows show is normal to the candidate."""
    from streamae.models.train import fit
    config = small_config("linear", **{"model.components": 8, "model.variance": 0.999})
    train, newest = _sine_windows(0.0), _sine_windows(1.5, 100)
    train[:, :, 0] += np.random.default_rng(1).normal(scale=0.3, size=(len(train), 1))
    errors = {}
    for name, reach in (("train only", None), ("all given", np.concatenate([train, newest]))):
        model = build_model(config.model, 16, 2)
        fit(model, train, newest, config.train, reach=reach)
        with torch.no_grad():
            errors[name] = float(model.errors(torch.from_numpy(newest))[0, ..., 0].mean())
    assert errors["all given"] < 0.05 < errors["train only"]


def test_a_linear_checkpoint_from_before_the_bounds_loads_unbounded():
    config = small_config("linear", **{"model.components": 4})
    model = build_model(config.model, 16, 2)
    model.fit_closed(_sine_windows())
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("code_")}
    fresh = build_model(config.model, 16, 2)
    fresh.load_state_dict(state)  # strict: the bounds are filled in, unbounded
    assert torch.isinf(fresh.code_low).all() and torch.isinf(fresh.code_high).all()
    assert (fresh.code_low < 0).all() and (fresh.code_high > 0).all()

def test_variational_and_denoising_options_train(train_frame):
    config = small_config("lstm", **{"model.variational": True, "train.noise_std": 0.1,
                                     "train.mask_ratio": 0.1, "train.epochs": 1})
    detector = train_detector(train_frame, config)
    a, _ = detector.score(windows())
    b, _ = detector.score(windows())
    np.testing.assert_array_equal(a, b)  # scoring uses the mean: deterministic


def test_early_stopping_keeps_the_best_epoch_and_validates_on_every_key(train_frame):
    config = small_config("lstm", **{"train.epochs": 6, "train.min_epochs": 2})
    detector = train_detector(train_frame, config)
    t = detector.info["training"]
    assert t["epochs"] >= 2 and 1 <= t["best_epoch"] <= t["epochs"]
    assert t["best_val_loss"] < t["initial_val_loss"]  # training actually trains
    assert set(detector.calibration.key_samples) == {"sensor-0", "sensor-1"}


def test_auto_window_follows_the_dominant_period():
    t = np.arange(3000, dtype=float)
    rng = np.random.default_rng(0)
    values = (np.sin(2 * np.pi * t / 40) + 0.1 * rng.normal(size=len(t))).astype(np.float32)
    frame = Frame(t * 60, np.full(len(t), "k", dtype=object), values[:, None], ["v"])
    detector = train_detector(frame, small_config(
        "linear", **{"window.size": "auto", "window.min_size": 16, "window.max_size": 128}))
    assert detector.window == 40 and detector.info["window"] == 40
    noise = Frame(t * 60, frame.keys, rng.normal(size=(len(t), 1)).astype(np.float32), ["v"])
    flat = train_detector(noise, small_config("linear", **{"window.size": "auto"}))
    assert flat.window == 64  # no clear period: the fallback, within bounds
