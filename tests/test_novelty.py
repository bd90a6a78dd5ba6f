"""The novelty member: each key's memory of its recent windows."""

import dataclasses
import math

import numpy as np
import pytest

from streamae.backtest import run_backtest
from streamae.models.calibration import Calibration
from streamae.models.detector import Detector, calibrated
from streamae.config import Config
from streamae.novelty import Novelty, NoveltySettings, features, nearest, replay
from streamae.pipeline import Pipeline
from streamae.types import Frame


def naive(slots, windows, new, query, insert, size, steps, window, least):
    """Nearest earlier remembered window, written out per key with Python lists."""
    memory = {}  # key -> list of (end, features), oldest first
    points = {}
    out = []
    for k, x, n, q, ins in zip(slots, windows, new, query, insert):
        points[k] = points.get(k, 0) + n
        now = points[k]
        f = features(x[None], steps)[0]
        usable = [g for end, g in memory.get(k, []) if end <= now - window][-size:]
        if q and len(usable) >= least:
            out.append(min(math.dist(f, g) for g in usable))
        else:
            out.append(math.nan)
        if ins:
            memory.setdefault(k, []).append((now, f))
    return np.array(out)


def test_kernel_matches_a_naive_nearest_neighbour_search():
    rng = np.random.default_rng(3)
    n, w, c = 600, 12, 2
    slots = rng.integers(0, 3, n)
    windows = rng.normal(size=(n, w, c)).astype(np.float32)
    new = rng.integers(1, 6, n)
    query, insert = rng.random(n) < 0.8, rng.random(n) < 0.7
    settings = NoveltySettings(size=20, steps=4, least=3)
    got = Novelty(settings, w, c, capacity=1).judge(slots, windows, new, query, insert)
    want = naive(slots, windows, new, query, insert, 20, 4, w, 3)
    np.testing.assert_allclose(got.distance, want, rtol=1e-5, equal_nan=True)
    shares = got.share[np.isfinite(got.distance) & (got.distance > 0)]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-4)


def test_features_are_part_means_of_each_channel():
    x = np.arange(2 * 10 * 3, dtype=np.float32).reshape(2, 10, 3)
    f = features(x, 3)  # parts of 3, 4 and 3 steps (rounded bounds 0, 3, 7, 10)
    assert f.shape == (2, 9)
    np.testing.assert_allclose(f[0, :3], x[0, 0:3].mean(axis=0))
    np.testing.assert_allclose(f[1, 3:6], x[1, 3:7].mean(axis=0))


def test_a_windows_level_counts_as_much_as_the_level_setting_says():
    rng = np.random.default_rng(3)
    shape = rng.normal(size=(1, 16, 2)).astype(np.float32)
    other = rng.normal(size=(1, 16, 2)).astype(np.float32)
    moved = other + np.float32(2.0)  # the same shape, two units higher on both channels
    for level in (1.0, 0.35, 0.0):
        a, b, c = (features(x, 4, level) for x in (shape, other, moved))
        shapes = ((features(shape, 4, 0.0) - features(other, 4, 0.0)) ** 2).sum()
        levels = ((shape.mean(1) - other.mean(1) - 2.0) ** 2).sum()
        # squared distance: the shapes' plus level ** 2 times the levels' in every part
        np.testing.assert_allclose(((a - c) ** 2).sum(), shapes + 4 * level ** 2 * levels,
                                   rtol=1e-4)
        np.testing.assert_allclose(((b - c) ** 2).sum(), 4 * level ** 2 * 8.0, rtol=1e-4,
                                   atol=1e-6)


def test_a_slow_move_of_level_is_less_new_than_a_new_shape_by_default():
    t = np.arange(4000)
    x = np.sin(2 * np.pi * t / 50)[:, None].astype(np.float32)
    x[2000:, 0] += 0.5  # the level moved (a slow trend, a weekly cycle), the shape did not
    x[3000:3050, 0] = 0.5 + np.sin(2 * np.pi * t[3000:3050] / 13)  # a new rhythm
    ends = np.arange(199, 4000, 8)
    settings = NoveltySettings(256, 8, 16, level=Config().novelty.level)
    d, _ = replay(x, ends, settings, 64, 8)
    moved = d[(ends >= 2064) & (ends < 2300)]
    burst = d[(ends >= 3010) & (ends < 3100)]
    assert np.nanmax(moved) < np.nanmin(burst)
    d_full, _ = replay(x, ends, NoveltySettings(256, 8, 16, level=1.0), 64, 8)
    assert np.nanmax(d_full[(ends >= 2064) & (ends < 2300)]) > np.nanmin(burst)


def test_a_repeated_pattern_is_familiar_and_a_new_one_is_not():
    t = np.arange(4000)
    x = np.sin(2 * np.pi * t / 50)[:, None].astype(np.float32)
    x[3000:3050, 0] = np.sin(2 * np.pi * t[3000:3050] / 13)  # a burst of another rhythm
    ends = np.arange(199, 4000, 8)
    d, remembered = replay(x, ends, NoveltySettings(256, 8, 16), 64, 8)
    normal = d[(ends > 1000) & (ends < 2900)]
    burst = d[(ends >= 3010) & (ends < 3100)]
    assert np.nanmax(normal) < 0.05 < np.nanmin(burst)
    assert remembered.shape == (256, 8)


def test_a_memory_seeded_from_training_is_ready_at_once_and_respects_its_size():
    memory = Novelty(NoveltySettings(size=10, steps=2, least=5), 8, 1)
    seed = np.arange(30, dtype=np.float32).reshape(15, 2)
    memory.seed(0, seed)
    np.testing.assert_array_equal(memory.remembered(0), seed[-10:])
    judged = memory.judge(np.array([0]), np.full((1, 8, 1), 25.0, np.float32), np.array([8]),
                          np.array([True]))
    assert judged.distance[0] == pytest.approx(math.dist([25.0, 25.0], seed[-3]))


def test_calibration_keeps_novelty_through_a_checkpoint(tmp_path, trained, train_frame):
    detector, config = trained
    assert detector.calibration.novelty.on and detector.calibration.novelty_seeds
    detector.save(tmp_path / "m")
    loaded = Detector.load(tmp_path / "m")
    a, b = detector.calibration, loaded.calibration
    assert (a.novelty, a.novelty_loc, a.novelty_scale) == (b.novelty, b.novelty_loc,
                                                          b.novelty_scale)
    assert a.novelty_seeds.keys() == b.novelty_seeds.keys()
    for key in a.novelty_seeds:
        np.testing.assert_array_equal(a.novelty_seeds[key], b.novelty_seeds[key])
    x = np.random.default_rng(0).normal(size=(6, detector.window, len(detector.channels)))
    given = (np.array([0.5, 1.0, np.nan, 3.0, 9.0, 0.0]),
             np.full((6, len(detector.channels)), 1 / len(detector.channels), np.float32))
    np.testing.assert_array_equal(detector.score(x, novelty=given)[0],
                                  loaded.score(x, novelty=given)[0])
    off = calibrated(detector, train_frame, dataclasses.replace(
        config, novelty=dataclasses.replace(config.novelty, size=0)))
    assert not off.calibration.novelty.on and Pipeline(off, config).novelty is None


def test_unknown_novelty_counts_as_typical():
    rng = np.random.default_rng(2)
    errors = rng.chisquare(1, size=(1, 300, 8, 2))
    novelty = rng.gamma(4.0, 0.5, size=300)
    cal = Calibration.fit(errors, np.full(300, "k", dtype=object), [[0]], hop=4, smooth=2,
                          novelty_settings=NoveltySettings(64, 4, 8), novelty=novelty)
    shares = np.full((300, 2), 0.5, np.float32)
    typical = np.full(300, cal.novelty_loc)
    known, _ = cal.score(errors, novelty=(typical, shares))
    unknown, _ = cal.score(errors, novelty=(np.full(300, np.nan), shares))
    absent, _ = cal.score(errors)
    np.testing.assert_allclose(known, unknown, atol=1e-6)
    np.testing.assert_allclose(known, absent, atol=1e-6)
    high, contrib = cal.score(errors, novelty=(np.full(300, cal.novelty_loc + 10
                                                       * cal.novelty_scale), shares))
    assert np.all(high[:, -1] > known[:, -1] + 4)  # a novel window raises the score


def test_an_incident_stays_new_and_a_normal_window_is_learnt(trained, synthetic):
    """Windows in an alarm are not remembered: a level that stays out of line keeps its
    novelty (the model members' verdict is not outvoted by a memory of the incident).
    With ``learn: calm`` the threshold does not learn it either: whether it is a new
    normal is the updater's call."""
    detector, config = trained
    config = dataclasses.replace(config, threshold=dataclasses.replace(config.threshold,
                                                                       learn="calm"))
    live = synthetic.take(synthetic.timestamps >= np.median(synthetic.timestamps))
    key = live.keys == "sensor-0"
    values = live.values.copy()
    late = key & (live.timestamps >= np.quantile(live.timestamps[key], 0.4))
    values[late] += 6 * live.values[key].std(axis=0)
    moved = dataclasses.replace(live, values=values, labels=np.zeros(len(live), np.int8))
    pipeline = Pipeline(detector, config)
    distances = []
    pipeline.on_windows = lambda data, keys, ts, scores, protected, novelty: distances.append(
        (keys, ts, novelty, protected))
    pipeline.process(moved)
    keys, ts, nov, protected = (np.concatenate(c) for c in zip(*distances))
    mine = keys == "sensor-0"
    start = live.timestamps[late].min()
    after = mine & (ts > start + (ts.max() - start) / 2)
    assert protected[after].all()  # the key stayed in alarm...
    before = mine & (ts < start)
    assert np.nanmedian(nov[after]) > 3 * np.nanmedian(nov[before])  # ...and stayed new


def test_a_key_unseen_in_training_starts_with_an_empty_memory(trained, synthetic):
    detector, config = trained
    one = synthetic.take(synthetic.keys == "sensor-0")
    other = Frame(one.timestamps, np.full(len(one), "new-key", dtype=object), one.values,
                  one.channels)
    result = run_backtest(other.take(np.arange(400)), detector, config)
    assert np.isfinite(result.score[detector.window:]).all()
    pipeline = Pipeline(detector, config)
    pipeline.process(other.take(np.arange(10)))
    assert pipeline.novelty.state[0, 1] == 0  # nothing remembered yet


def test_nearest_outside_a_ring_matches_the_kernel():
    rng = np.random.default_rng(4)
    w, c = 12, 3
    settings = NoveltySettings(size=40, steps=4, least=3)
    history = rng.normal(size=(40, w, c)).astype(np.float32)
    ring = Novelty(settings, w, c, capacity=1)
    ring.seed(0, features(history, 4))
    query = rng.normal(size=(9, w, c)).astype(np.float32)
    live = ring.judge(np.zeros(9, np.int64), query, np.full(9, w), np.ones(9, bool))
    distance, share = nearest(features(query, 4), features(history, 4), c)
    np.testing.assert_allclose(distance, live.distance, rtol=1e-4)
    np.testing.assert_allclose(share, live.share, rtol=1e-3, atol=1e-5)


def test_a_window_sees_the_same_memory_judged_alone_or_with_its_neighbours():
    """Windows judged in one batch before the earlier ones are remembered find the same
    nearest windows as when each is remembered before the next is judged."""
    rng = np.random.default_rng(5)
    w, hop, c, n = 16, 4, 2, 120
    settings = NoveltySettings(size=6, steps=4, least=2)
    windows = rng.normal(size=(n, w, c)).astype(np.float32)
    slots, new = np.zeros(n, np.int64), np.full(n, hop)
    keep = rng.random(n) < 0.8
    alone = Novelty(settings, w, c, capacity=1, hop=hop)
    one = [alone.judge(slots[i:i + 1], windows[i:i + 1], new[i:i + 1], np.ones(1, bool),
                       keep[i:i + 1]).distance[0] for i in range(n)]
    rounds = Novelty(settings, w, c, capacity=1, hop=hop)
    many = []
    for i in range(0, n, w // hop - 1):  # a round: windows that all overlap each other
        part = slice(i, i + w // hop - 1)
        judged = rounds.judge(slots[part], windows[part], new[part], np.ones(len(
            windows[part]), bool))
        rounds.remember(slots[part], judged, keep[part])
        many.extend(judged.distance)
    np.testing.assert_allclose(many, one, rtol=1e-5, equal_nan=True)


def test_a_memory_saved_with_another_ring_length_keeps_its_newest_windows():
    settings = NoveltySettings(size=4, steps=1, least=1)
    small = Novelty(settings, 2, 1, capacity=1, hop=2)
    big = Novelty(settings, 2, 1, capacity=1, hop=1)
    assert small.slots != big.slots
    x = np.arange(9, dtype=np.float32).reshape(9, 1, 1).repeat(2, axis=1)
    small.judge(np.zeros(9, np.int64), x, np.full(9, 2), np.zeros(9, bool), np.ones(9, bool))
    big.load_state_dict(small.state_dict())
    np.testing.assert_array_equal(big.remembered(0), small.remembered(0))


def test_too_few_held_out_distances_turn_the_novelty_off_and_a_refit_keeps_its_scale():
    rng = np.random.default_rng(6)
    errors = rng.chisquare(1, size=(1, 300, 8, 2))
    keys = np.full(300, "k", dtype=object)
    few = np.full(300, np.nan)
    few[:5] = 1.0
    settings = NoveltySettings(64, 4, 8)
    off = Calibration.fit(errors, keys, [[0]], hop=4, smooth=2, novelty_settings=settings,
                          novelty=few)
    assert not off.novelty.on
    on = Calibration.fit(errors, keys, [[0]], hop=4, smooth=2, novelty_settings=settings,
                         novelty=rng.gamma(4.0, 0.5, size=300))
    refit = on.refit(errors * 2, keys, np.full(300, 50.0))
    assert (refit.novelty_loc, refit.novelty_scale) == (on.novelty_loc, on.novelty_scale)
    # the windows' novelty (here far from typical) joins the new held-out scores
    assert np.median(refit.sample) > np.median(on.refit(errors * 2, keys).sample) + 5


def test_a_model_whose_novelty_seeds_are_all_empty_loads():
    rng = np.random.default_rng(7)
    errors = rng.chisquare(1, size=(1, 300, 8, 2))
    cal = Calibration.fit(errors, np.full(300, "k", dtype=object), [[0]], hop=4, smooth=2,
                          novelty_settings=NoveltySettings(64, 4, 8),
                          novelty=rng.gamma(4.0, 0.5, size=300))
    cal.novelty_seeds = {"k": np.zeros((0, 8), np.float32)}
    back = Calibration.restore(cal.meta(), cal.arrays())
    assert back.novelty_seeds == {} and back.novelty == cal.novelty


def test_keys_handed_over_with_another_ring_length_keep_their_memories(trained, synthetic):
    detector, config = trained
    one = synthetic.take(synthetic.keys == "sensor-0").take(np.arange(600))
    sender = Pipeline(detector, config)
    sender.process(one)
    other = dataclasses.replace(config, window=dataclasses.replace(
        config.window, hop=config.window.hop * 2))
    receiver = Pipeline(detector, other)
    assert receiver.novelty.slots != sender.novelty.slots
    receiver.import_keys(sender.export_keys(["sensor-0"]))
    slot = receiver.keys.slot["sensor-0"]
    np.testing.assert_array_equal(receiver.novelty.remembered(slot),
                                  sender.novelty.remembered(sender.keys.slot["sensor-0"]))
