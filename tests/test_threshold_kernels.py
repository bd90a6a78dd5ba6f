"""Every kernel against its naive reference on random inputs (also run without JIT)."""

import numpy as np
import pytest

import reference
from streamae.config import AlarmConfig, ThresholdConfig
from streamae.threshold import Alarm, Decision, QuantileThreshold, SpotThreshold
from streamae.threshold.tail import TailThreshold
from streamae.threshold.tail_kernel import T_REACH, T_SHAPE


def stream(seed, n=3000, keys=3):
    rng = np.random.default_rng(seed)
    slots = rng.integers(0, keys, n).astype(np.int64)
    scores = rng.gamma(2.0, 1.0, n)
    scores[rng.random(n) < 0.01] *= 8  # some anomalies
    return slots, scores, keys


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spot_matches_reference(seed):
    slots, scores, keys = stream(seed)
    config = ThresholdConfig(kind="spot", risk=1e-3, init_points=100, init_quantile=0.95)
    thr = SpotThreshold(config)
    thr.ensure(keys)
    got = np.concatenate([thr.apply(slots[:1234], scores[:1234]), thr.apply(slots[1234:], scores[1234:])])
    want = reference.spot(slots, scores, keys, 100, 1e-3, 0.95)
    np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)
    assert np.isnan(got[:100]).sum() > 0 and np.isfinite(got[-100:]).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_quantile_matches_reference(seed):
    slots, scores, keys = stream(seed)
    config = ThresholdConfig(kind="quantile", quantile=0.99, margin=1.2, init_points=50)
    thr = QuantileThreshold(config)
    thr.ensure(keys)
    got = thr.apply(slots, scores)
    want = reference.p2(slots, scores, keys, 0.99, 1.2, 50)
    np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)


def test_quantile_estimate_is_close_to_the_true_quantile():
    rng = np.random.default_rng(3)
    scores = rng.exponential(1.0, 20000)
    thr = QuantileThreshold(ThresholdConfig(kind="quantile", quantile=0.99, init_points=10))
    out = thr.apply(np.zeros(len(scores), dtype=np.int64), scores)
    assert abs(out[-1] - np.log(100)) < 0.35  # exact 0.99-quantile of Exp(1) is 4.6


def test_spot_threshold_exceeded_at_about_the_risk_rate():
    rng = np.random.default_rng(4)
    scores = rng.exponential(1.0, 100_000)
    thr = SpotThreshold(ThresholdConfig(risk=1e-3, init_points=1000, init_quantile=0.98))
    out = thr.apply(np.zeros(len(scores), dtype=np.int64), scores)
    rate = np.mean(scores[1000:] > out[1000:])
    # exceedances are kept out of the tail model (they are anomalies), which thins the tail:
    # the realised rate sits within a few times the nominal risk, never orders away
    assert 3e-4 < rate < 5e-3


@pytest.mark.parametrize("seed", [0, 5])
def test_alarm_matches_reference(seed):
    slots, scores, keys = stream(seed, n=4000)
    rng = np.random.default_rng(seed)
    ts = np.cumsum(rng.integers(1, 60, len(slots))).astype(float)
    thresholds = np.where(rng.random(len(slots)) < 0.02, np.nan, 4.0)
    config = AlarmConfig(enter_level=1.0, exit_level=0.7, min_hits=1, hit_window=1,
                         min_duration=30, resolve_after=120, suppress=300, update_every=60,
                         prune=0.0)
    alarm = Alarm(config)
    alarm.ensure(keys)
    out = alarm.apply(slots, ts, scores, thresholds)
    flags, events = reference.alarm(slots, ts, scores, thresholds, keys, 1.0, 0.7, 30, 120, 300, 60)
    np.testing.assert_array_equal(out.anomaly, flags)
    np.testing.assert_array_equal(out.event, events)
    assert (events == 1).sum() > 3 and (events == 3).sum() > 3


@pytest.mark.parametrize("seed", [1, 2])
def test_alarm_with_point_spans_hits_and_pruning_matches_reference(seed):
    slots, scores, keys = stream(seed, n=4000)
    rng = np.random.default_rng(seed)
    ts = np.cumsum(rng.integers(1, 60, len(slots))).astype(float)
    thresholds = np.full(len(slots), 2.0)
    config = AlarmConfig(enter_level=1.0, exit_level=0.7, min_hits=2, hit_window=4,
                         min_duration="2 points", resolve_after="5 points", suppress=120,
                         prune=0.5, prune_memory="40 points", update_every="3 points")
    alarm = Alarm(config)
    alarm.ensure(keys)
    out = alarm.apply(slots, ts, scores, thresholds)
    flags, events = reference.alarm(
        slots, ts, scores, thresholds, keys, 1.0, 0.7, 2, 5, 120, 3, min_hits=2, hit_window=4,
        prune=0.5, prune_memory=40,
        points=("min_duration", "resolve_after", "update_every", "prune_memory"))
    np.testing.assert_array_equal(out.anomaly, flags)
    np.testing.assert_array_equal(out.event, events)
    assert (events == 1).sum() > 3


def test_alarm_levels_from_a_typical_score_match_reference():
    slots, scores, keys = stream(3, n=4000)
    rng = np.random.default_rng(3)
    ts = np.cumsum(rng.integers(1, 60, len(slots))).astype(float)
    scores = scores + 5.0  # every score well above 0: a ratio to the threshold means little
    thresholds = np.full(len(slots), 9.0)
    bases = np.where(rng.random(len(slots)) < 0.05, np.nan, 5.0 + rng.normal(0, 0.1, len(slots)))
    config = AlarmConfig(enter_level=1.0, exit_level=0.6, min_hits=1, hit_window=1,
                         min_duration=0, resolve_after=120, suppress=0, update_every=60,
                         prune=0.0)
    alarm = Alarm(config)
    alarm.ensure(keys)
    out = alarm.apply(slots, ts, scores, thresholds, bases)
    flags, events = reference.alarm(slots, ts, scores, thresholds, keys, 1.0, 0.6, 0, 120, 0,
                                    60, bases=bases)
    np.testing.assert_array_equal(out.anomaly, flags)
    np.testing.assert_array_equal(out.event, events)
    assert (events == 3).sum() > 3  # alarms close: calm is judged from the typical score


def test_the_tail_threshold_alarms_the_same_on_any_score_offset():
    """Levels are measured from each key's typical score (the median it remembers), so
    a detector whose normal scores sit far from 0 gets the same alarms as one centred on
    0 (a ratio to the threshold kept such alarms open for ever)."""
    slots, scores, keys = stream(4, n=6000)
    ts = np.arange(len(slots), dtype=float)
    outs = []
    for offset in (0.0, 50.0):
        decision = Decision(ThresholdConfig(memory=2000, sample_every=4, init_points=200),
                            AlarmConfig(min_hits=1, hit_window=1, resolve_after="8 points",
                                        suppress=0))
        decision.ensure(keys)
        _, out = decision.apply(slots, ts, scores + offset)
        outs.append(out)
    np.testing.assert_array_equal(outs[0].anomaly, outs[1].anomaly)
    assert 0 < outs[1].anomaly.mean() < 0.2


def test_min_hits_and_pruning_turn_a_burst_into_one_alarm():
    burst = np.array([0.1, 2.0, 0.1, 0.1, 2.0, 2.0, 0.1, 0.1, 0.1, 0.1, 1.5, 0.1, 0.1, 0.1])
    one = np.zeros(len(burst), dtype=np.int64)
    plain = Alarm(AlarmConfig(resolve_after="1 points", update_every=0, min_hits=1,
                              hit_window=1, suppress=0))
    assert (plain.apply(one, np.arange(14.0), burst, np.ones(14)).event == 1).sum() == 3
    careful = Alarm(AlarmConfig(resolve_after="1 points", min_hits=2, hit_window=3, prune=0.9,
                                update_every=0, suppress=0))
    out = careful.apply(one, np.arange(14.0), burst, np.ones(14))
    # the lone crossing is ignored, the pair opens, the weaker later one is pruned
    assert out.event.tolist()[:6] == [0, 0, 0, 0, 0, 1] and (out.event == 1).sum() == 1


def test_alarm_hysteresis_story():
    config = AlarmConfig(enter_level=1.0, exit_level=0.5, min_hits=1, hit_window=1,
                         min_duration=0, resolve_after=2, suppress=0, update_every=0)
    alarm = Alarm(config)
    scores = np.array([0.1, 2.0, 3.0, 0.8, 0.4, 0.3, 0.2, 0.1])
    out = alarm.apply(np.zeros(8, dtype=np.int64), np.arange(8.0), scores, np.ones(8))
    # opens at 2.0, updates at the new peak 3.0, 0.8 is above exit so still open,
    # calm from t=4, resolved at t=6 (calm for 2 s)
    assert out.event.tolist() == [0, 1, 2, 0, 0, 0, 3, 0]
    assert out.anomaly.tolist() == [0, 1, 1, 1, 1, 1, 0, 0]
    assert out.event_ts[6] == 4.0
    # when the key was last in alarm, as of each point: its own time while open, then the
    # resolve time
    assert out.last_hot.tolist() == [-np.inf, 1, 2, 3, 4, 5, 6, 6]


def test_calibrating_on_a_sample_equals_a_streaming_start_on_it():
    rng = np.random.default_rng(6)
    sample, later = rng.gamma(2.0, 1.0, 2000), rng.gamma(2.0, 1.0, 500)
    big = SpotThreshold(ThresholdConfig(risk=1e-3, init_points=2000, init_quantile=0.98))
    big.apply(np.zeros(2000, dtype=np.int64), sample)
    small = SpotThreshold(ThresholdConfig(risk=1e-3, init_points=200, init_quantile=0.98))
    small.ensure(3)
    small.apply(np.full(300, 2, dtype=np.int64), rng.gamma(9.0, 1.0, 300))  # another scale
    small.refit(2, sample)  # restarts slot 2 as if it had started on all of the sample
    zeros, twos = np.zeros(500, dtype=np.int64), np.full(500, 2, dtype=np.int64)
    np.testing.assert_allclose(small.apply(twos, later), big.apply(zeros, later), rtol=1e-12)
    few = SpotThreshold(ThresholdConfig(init_points=200))
    few.refit(0, sample[:50])  # fewer than init_points: still calibrating
    assert np.isnan(few.apply(np.zeros(1, dtype=np.int64), later[:1])).all()


@pytest.mark.parametrize("learn", ["capped", "all"])
def test_tail_matches_reference(learn):
    slots, scores, keys = stream(3, n=6000)
    config = ThresholdConfig(kind="tail", memory=800, sample_every=4, init_points=80,
                             learn=learn, risk=1e-3)
    tail = TailThreshold(config)
    tail.ensure(keys)
    out = tail.apply(slots, scores)
    want = reference.tail(slots, scores, keys, 200, 4, 20, 1e-3, 0.98, learn)
    np.testing.assert_allclose(out, want, rtol=1e-6, equal_nan=True)
    assert np.isfinite(out[-100:]).all()


def test_tail_threshold_is_exceeded_at_about_the_risk_rate_and_not_taught_by_alarms():
    rng = np.random.default_rng(2)
    tail = TailThreshold(ThresholdConfig(kind="tail", memory=4000, sample_every=4, risk=1e-3,
                                         learn="capped"))  # (calm needs the alarm stage)
    tail.ensure(2)
    for slot in (0, 1):
        tail.seed(slot, rng.gamma(2.0, 1.0, 2000))
    assert np.isfinite(tail.level(0))  # a threshold at once, from the held-out sample
    scores = rng.gamma(2.0, 1.0, 40_000)
    thr, prob = tail.judge(np.zeros(len(scores), dtype=np.int64), scores)
    tail.judge(np.ones(len(scores), dtype=np.int64), scores)
    rate = np.mean(scores[4000:] > thr[4000:])
    assert 3e-4 < rate < 3e-3
    # the tail probability is the threshold's scale: below risk exactly where it is crossed
    assert np.all((prob[4000:] <= 1e-3 * 1.0001) == (scores[4000:] >= thr[4000:]))
    # a short incident (scores x4) stays above the threshold and hardly moves it: its
    # points are remembered at the threshold, not at their own height
    before = tail.level(0)
    one = np.zeros(60, dtype=np.int64)
    incident = rng.gamma(2.0, 4.0, 60) + before
    thr2, _ = tail.judge(one, incident)
    assert np.mean(incident > thr2) > 0.95 and tail.level(0) < 1.2 * before
    # a level that stays (crossing it far more often than the tail start allows) is
    # learnt as it is: after a while the threshold describes the new normal
    lasting = rng.gamma(2.0, 4.0, 8000) + tail.level(1)
    thr3, _ = tail.judge(np.ones(len(lasting), dtype=np.int64), lasting)  # another key
    assert np.mean(lasting[:60] > thr3[:60]) > 0.9
    assert np.mean(lasting[-2000:] > thr3[-2000:]) < 0.01


def test_a_new_normals_alarm_closes_once_its_threshold_has_re_learnt():
    """A key whose scores move to a new level that stays: its threshold re-learns
    (relearn_above), and its alarm closes once the scores sit under it. Hysteresis then
    counts from where the key is now, not from the median of a memory still full of the
    old level (which held the alarm open until the new level filled half the memory)."""
    rng = np.random.default_rng(11)
    config = ThresholdConfig(kind="tail", memory=4000, sample_every=4, risk=1e-3)
    decision = Decision(config, AlarmConfig(min_hits=1, hit_window=1, suppress=0,
                                            resolve_after="16 points"))
    decision.ensure(2)
    decision.seed({0: rng.gamma(2.0, 1.0, 2000), 1: rng.gamma(2.0, 1.0, 2000)})
    n = 4000
    ts = np.arange(n, dtype=float)
    moved = np.concatenate([rng.gamma(2.0, 1.0, 1000), 12.0 + rng.gamma(2.0, 1.0, n - 1000)])
    thr, out = decision.apply(np.zeros(n, dtype=np.int64), ts, moved)
    assert out.anomaly[1000:1050].all()  # the move itself is an alarm
    resolved = np.flatnonzero(out.event == 3)
    assert len(resolved) and resolved[0] < 1500  # ... that resolves once it has re-learnt
    assert out.anomaly[2000:].mean() < 0.2  # (before: in alarm from 1000 to 2900)
    assert np.mean(moved[2000:] > thr[2000:]) < 0.02
    # an incident on a key that never moved still holds its alarm open to the end
    burst = np.concatenate([rng.gamma(2.0, 1.0, 1000), 12.0 + rng.gamma(2.0, 1.0, 200)])
    _, out = decision.apply(np.ones(1200, dtype=np.int64), ts[:1200], burst)
    assert out.anomaly[1000:].all()


def test_tail_state_saved_before_the_re_learning_base_loads_with_it_unset():
    from streamae.threshold.tail_kernel import T_NOW, TAIL_COLS

    rng = np.random.default_rng(12)
    tail = TailThreshold(ThresholdConfig(kind="tail", memory=800, sample_every=4))
    tail.ensure(2)
    tail.seed(1, rng.gamma(2.0, 1.0, 500))
    old = {k: v[:, :T_NOW] if k == "state" else v for k, v in tail.state_dict().items()}
    restored = TailThreshold(ThresholdConfig(kind="tail", memory=800, sample_every=4))
    restored.load_state_dict(old)
    assert restored.state.shape[1] == TAIL_COLS and np.isnan(restored.state[:, T_NOW]).all()
    assert restored.level(1) == tail.level(1)
    scores = rng.gamma(2.0, 1.0, 300)
    np.testing.assert_array_equal(restored.apply(np.ones(300, dtype=np.int64), scores),
                                  tail.apply(np.ones(300, dtype=np.int64), scores))


def test_tail_with_learn_calm_never_learns_from_inside_an_alarm():
    rng = np.random.default_rng(3)
    config = ThresholdConfig(kind="tail", memory=4000, sample_every=4, risk=1e-3, learn="calm")
    decision = Decision(config, AlarmConfig(min_hits=1, hit_window=1, suppress=0))
    decision.ensure(1)
    decision.seed({0: rng.gamma(2.0, 1.0, 2000)})
    ts = np.arange(6000.0)
    lasting = rng.gamma(2.0, 4.0, 6000) + 10
    thr, out = decision.apply(np.zeros(6000, dtype=np.int64), ts, lasting)
    assert out.anomaly[-2000:].mean() > 0.95 and thr[-1] == thr[100]


def test_tail_calibrate_restarts_a_key_from_recent_scores():
    tail = TailThreshold(ThresholdConfig(kind="tail", memory=800, sample_every=4))
    tail.ensure(2)
    tail.refit(1, np.linspace(0, 10, 800))
    assert 9.5 < tail.level(1) < 15 and np.isnan(tail.level(0))


def test_decision_state_roundtrip():
    slots, scores, keys = stream(9, n=1000)
    ts = np.arange(len(slots), dtype=float)
    a = Decision(ThresholdConfig(init_points=50), AlarmConfig(resolve_after=5))
    a.ensure(keys)
    a.apply(slots[:600], ts[:600], scores[:600])
    b = Decision(ThresholdConfig(init_points=50), AlarmConfig(resolve_after=5))
    b.load_state_dict(a.state_dict())
    t1, o1 = a.apply(slots[600:], ts[600:], scores[600:])
    t2, o2 = b.apply(slots[600:], ts[600:], scores[600:])
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(o1.event, o2.event)


def test_a_restarted_memory_stands_in_only_until_as_many_points_have_followed():
    rng = np.random.default_rng(13)
    tail = TailThreshold(ThresholdConfig(kind="tail", memory=4000, sample_every=4, risk=1e-3))
    tail.ensure(1)
    tail.refit(0, rng.gamma(2.0, 1.0, 400) + 40, lent=True)  # a long alarm's, as normal
    high = tail.level(0)
    assert high > 40
    calm = tail.apply(np.zeros(800, dtype=np.int64), rng.gamma(2.0, 1.0, 800))
    # its 100 remembered scores are replaced by the next 400 points', not kept for the
    # 4000 points the memory covers
    assert calm[300] > 40 and calm[-1] < 20


def test_a_restarted_threshold_forgets_the_strong_peak_that_pruned_weaker_alarms():
    decision = Decision(ThresholdConfig(kind="tail", memory=800, sample_every=4),
                        AlarmConfig(min_hits=1, hit_window=1, suppress=0, prune=0.5,
                                    resolve_after="2 points", prune_memory="1000 points"))
    decision.ensure(1)
    calm = np.full(200, 1.0) + np.linspace(0, 0.1, 200)
    decision.seed({0: calm})
    level = decision.threshold.level(0)

    clock = [0.0]

    def run(scores: np.ndarray) -> np.ndarray:
        n = len(scores)
        ts = clock[0] + np.arange(n, dtype=float)
        clock[0] += n
        return decision.apply(np.zeros(n, dtype=np.int64), ts, scores)[1].event

    assert (run(np.r_[np.full(5, 1.0), np.full(5, 20 * level), np.full(20, 1.0)]) == 1).sum() == 1
    weak = np.r_[np.full(5, 1.0), np.full(5, 3 * level), np.full(20, 1.0)]
    assert (run(weak) == 1).sum() == 0  # pruned beside the strong peak
    decision.reseed({0: calm})  # e.g. the key got new scaling
    assert (run(weak) == 1).sum() == 1


def test_a_key_seeded_from_a_short_history_keeps_a_threshold_while_its_memory_fills():
    # 80 held-out scores stand for 20 remembered ones, fewer than the 50 a fitted tail
    # needs: the key starts with a threshold from its held-out scores and keeps one (it
    # used to lose it at its first own score and have none until 50 were remembered)
    rng = np.random.default_rng(4)
    tail = TailThreshold(ThresholdConfig(kind="tail", memory=4000, sample_every=4,
                                         init_points=200, risk=1e-3))
    tail.ensure(1)
    tail.seed(0, rng.gamma(2.0, 1.0, 80))
    start = tail.level(0)
    assert np.isfinite(start)
    live = tail.apply(np.zeros(400, dtype=np.int64), rng.gamma(2.0, 1.0, 400))
    assert np.isfinite(live).all()
    # until 50 are remembered (120 points) it stands on all 80 held-out scores, no higher
    # than the 20 it started from allowed
    assert len(np.unique(live[4:120])) == 1 and live[4] <= start


def test_a_swapped_in_models_restart_does_not_learn_a_missed_incident_as_the_keys_tail():
    rng = np.random.default_rng(21)
    config = ThresholdConfig(kind="tail", memory=4000, sample_every=4, risk=1e-3)
    calm = rng.gamma(2.0, 1.0, 4000)
    # the new model's scores of the key's recent data: an incident no alarm kept out of
    # the updater's buffer among them
    recent = np.r_[rng.gamma(2.0, 1.0, 900), rng.gamma(2.0, 1.0, 100) + 30]
    tail = TailThreshold(config)
    tail.ensure(3)
    tail.apply(np.zeros(4000, dtype=np.int64), calm)
    before = tail.level(0)
    tail.refit(0, recent)  # remembered capped at the threshold, as the key learns
    tail.refit(1, recent)  # a key with no threshold yet: as they are
    assert tail.level(0) < 1.001 * before < 20 and tail.level(1) > 30  # (float32 memory)
    # a model on another scale (most of its scores over the threshold): as they are
    tail.apply(np.full(4000, 2, dtype=np.int64), calm)
    tail.refit(2, 10 * recent)
    assert tail.level(2) > 10 * before
    # a key re-learning (crossing its threshold far more often than risk allows): as they are
    moved = TailThreshold(config)
    moved.ensure(1)
    moved.apply(np.zeros(4600, dtype=np.int64), np.r_[calm, rng.gamma(2.0, 1.0, 600) + 30])
    moved.refit(0, recent)
    assert moved.level(0) > 30
    # nor does learning everything as it is cap anything
    learn_all = TailThreshold(ThresholdConfig(kind="tail", memory=4000, sample_every=4,
                                              risk=1e-3, learn="all"))
    learn_all.ensure(1)
    learn_all.apply(np.zeros(4000, dtype=np.int64), calm)
    learn_all.refit(0, recent)
    assert learn_all.level(0) > 30


def test_a_young_memory_pooled_with_the_held_out_tail_gives_steadier_thresholds():
    """Keys seeded from held-out scores, 400 points of their own (50 remembered): their
    own tails rest on one or two peaks, so one score can lift a threshold by half. Pooled
    with the held-out tail (threshold.prior_peaks), keys alike get alike thresholds and
    no such jumps."""
    keys, n = 300, 400

    def young(prior):
        rng = np.random.default_rng(0)
        tail = TailThreshold(ThresholdConfig(kind="tail", memory=5000, sample_every=8,
                                             risk=1e-4, prior_peaks=prior))
        tail.ensure(keys)
        held = rng.gamma(2.0, 1.0, 2000)
        for k in range(keys):
            tail.seed(k, held)
        thr = tail.apply(np.tile(np.arange(keys), n), rng.gamma(2.0, 1.0, keys * n))
        thr = thr.reshape(n, keys)
        jumps = np.abs(np.diff(thr, axis=0)).max(axis=0) / thr[:-1].mean(axis=0)
        return thr[-1], np.quantile(jumps, 0.9)

    own, own_jump = young(0.0)
    pooled, pooled_jump = young(2.0)
    assert pooled.std() < 0.7 * own.std()
    assert pooled_jump < 0.75 * own_jump
    assert abs(np.median(pooled) - np.median(own)) < 0.1 * np.median(own)  # same level


def test_a_threshold_a_change_lifted_comes_back_down_once_the_bulk_is_back():
    """A change's scores restart a key's memory (an admitted new normal, lent) and lift
    its threshold 8-fold; then the old normal is back, 3% of its points incidents.
    Learnt capped, those incidents fill the memory's top at whatever threshold the key
    has, so without a bound it stays lifted and misses nearly all of them. The shape
    bound (threshold.shape_bound) holds it to what the bulk of the newest scores allows
    and it finds them, without flagging the normal points."""

    def replay(bound):
        rng = np.random.default_rng(4)
        tail = TailThreshold(ThresholdConfig(kind="tail", memory=4000, sample_every=4,
                                             risk=1e-4, shape_bound=bound))
        tail.ensure(1)
        tail.seed(0, rng.normal(0.0, 1.0, 3000))
        seeded = tail.level(0)
        tail.refit(0, rng.normal(25.0, 1.0, 800), lent=True)
        assert tail.level(0) > 7 * seeded
        x = rng.normal(0.0, 1.0, 8000)
        hit = rng.random(8000) < 0.03  # (under relearn_above: the key is not re-learning)
        x[hit] += rng.uniform(8, 20, hit.sum())
        thr = tail.apply(np.zeros(8000, dtype=np.int64), x)
        over = x[4000:] > thr[4000:]
        return seeded, thr, over[hit[4000:]].mean(), over[~hit[4000:]].mean()

    seeded, free, found_free, _ = replay(0.0)
    _, bounded, found, false = replay(2.0)
    assert free[-1] > 4 * seeded and found_free < 0.1
    assert bounded[-1] < 3 * seeded and found > 0.9 and false < 1e-3
    assert (bounded >= 0).all()


def test_a_keys_shape_bound_survives_a_restart_and_its_saved_state():
    rng = np.random.default_rng(5)
    config = ThresholdConfig(kind="tail", memory=800, sample_every=4, shape_bound=2.0)
    tail = TailThreshold(config)
    tail.ensure(1)
    tail.seed(0, rng.normal(0.0, 1.0, 2000))
    shape = tail.state[0, T_SHAPE]
    assert 8 < shape < 14  # twice a normal's (3.7 sd over its median) / 0.67 sd
    tail.refit(0, rng.normal(0.0, 1.0, 400))
    assert tail.state[0, T_SHAPE] == shape and tail.state[0, T_REACH] > 0
    restored = TailThreshold(config)
    restored.load_state_dict({**tail.state_dict(), "state": tail.state[:, :T_SHAPE]})  # older
    assert np.isnan(restored.state[:, T_SHAPE:]).all()  # no bound until seeded again
    assert np.isnan(TailThreshold(ThresholdConfig(kind="tail")).state[:, T_SHAPE]).all()
