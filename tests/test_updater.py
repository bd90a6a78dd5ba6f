"""Replay buffer, fine-tuning with transfer-learning settings, the validation gate and
the model store."""

import dataclasses
import re

import numpy as np
import pytest
import torch

from conftest import QUICK_ROUNDS, small_config
from streamae.config import FineTuneConfig, with_overrides
from streamae.models.dataset import training_windows
from streamae.updater.buffer import ReplayBuffer
from streamae.updater.finetune import fine_tune, parameter_groups
from streamae.updater.gate import validate
from streamae.updater.store import ModelStore


def test_buffer_keeps_recent_and_a_reservoir_of_older_windows():
    buf = ReplayBuffer(window=4, channels=1, recent=10, reservoir=20, quarantine=5, seed=0)
    for step in range(100):
        w = np.full((1, 4, 1), step, dtype=np.float32)
        buf.add(w, np.array(["k"]), np.array([float(step)]))
    data, ts = buf.windows()
    assert len(buf) == 30 and list(ts[-10:]) == list(range(90, 100))
    older = ts[:-10]
    assert len(older) == 20 and older.min() < 45  # the reservoir spans old history
    np.testing.assert_array_equal(data[:, 0, 0], ts)


def test_buffer_quarantines_alarm_windows_until_admitted_and_survives_restore():
    buf = ReplayBuffer(window=2, channels=1, recent=8, reservoir=4, quarantine=4)
    w = np.ones((3, 2, 1), dtype=np.float32)
    buf.add(w, np.array(["a", "b", "a"]), np.arange(3.0), protected=np.array([1, 0, 1], bool))
    assert len(buf) == 1 and buf.quarantine.size == 2
    assert buf.admit("a") == 2 and len(buf) == 3 and buf.quarantine.size == 0
    clone = ReplayBuffer(window=2, channels=1, recent=8, reservoir=4, quarantine=4)
    clone.load_state_dict(buf.state_dict())
    for a, b in zip(buf.windows(), clone.windows()):
        np.testing.assert_array_equal(a, b)


def test_a_buffer_without_a_reservoir_survives_restore_into_smaller_rings():
    """A follower daemon keeps no reservoir: its checkpoint must restore (it divided by
    the ring's capacity), and a ring smaller than the saved one keeps the newest."""
    buf = ReplayBuffer(window=2, channels=1, recent=8, reservoir=0, quarantine=4)
    w = np.arange(6.0, dtype=np.float32)[:, None, None].repeat(2, axis=1)
    buf.add(w, np.array(["a"] * 6), np.arange(6.0), protected=np.array([0, 0, 0, 0, 1, 1], bool))
    state = buf.state_dict()
    same = ReplayBuffer(window=2, channels=1, recent=8, reservoir=0, quarantine=4)
    same.load_state_dict(state)
    np.testing.assert_array_equal(same.windows()[1], [0.0, 1.0, 2.0, 3.0])
    smaller = ReplayBuffer(window=2, channels=1, recent=3, reservoir=0, quarantine=1)
    smaller.load_state_dict(state)
    np.testing.assert_array_equal(smaller.windows()[1], [1.0, 2.0, 3.0])
    assert smaller.quarantine.size == 1 and smaller.admit("a") == 1
    np.testing.assert_array_equal(smaller.windows()[1], [2.0, 3.0, 5.0])


def test_parameter_groups_freeze_and_slow_the_encoder(trained):
    detector, _ = trained
    cfg = FineTuneConfig(freeze_layers=1, encoder_lr_scale=0.1, lr=1e-4)
    groups = {g["name"]: g for g in parameter_groups(detector.model, cfg)}
    assert groups["decoder"]["lr"] == 1e-4
    def bare(name):  # an ensemble's member parameters: members.<i>.<name>
        return re.sub(r"^members\.\d+\.", "", name)

    frozen = [bare(n) for n, p in detector.model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("encoder.", "input.", "enc_pos")) for n in frozen)
    if "encoder" in groups:
        assert groups["encoder"]["lr"] == pytest.approx(1e-5)
    parameter_groups(detector.model, FineTuneConfig(freeze_encoder=True))
    assert not any(p.requires_grad for n, p in detector.model.named_parameters()
                   if bare(n).startswith(("encoder.", "to_latent.")))
    for p in detector.model.parameters():
        p.requires_grad_(True)


def test_fine_tune_leaves_live_model_alone_and_gate_rejects_a_broken_candidate(
        trained, train_frame, synthetic):
    detector, config = trained
    before = {k: v.clone() for k, v in detector.model.state_dict().items()}
    windows = training_windows(train_frame, detector.scaler, detector.window).train
    # gate tolerance 0.02: a candidate that matches the live model passes
    cfg = with_overrides(config, {"updater.finetune.epochs": 2, "updater.finetune.lr": 1e-3,
                                  "updater.finetune.device": "cpu",
                                  "updater.gate.tolerance": 0.02}).updater
    candidate, report = fine_tune(detector, windows, cfg.finetune)
    # a linear autoencoder is refitted in closed form: no epochs
    assert report.windows == len(windows)
    assert report.epochs >= 1 or detector.model_config.kind == "linear"
    for k, v in detector.model.state_dict().items():
        assert torch.equal(v, before[k])
    holdout, recent = windows[-300:], windows[-600:]
    good = validate(detector, candidate, holdout, recent, cfg.gate, config.threshold)
    assert good.accepted, good.reasons
    # a candidate trained on anomalous data (shifted, noise bursts everywhere) is refused
    rng = np.random.default_rng(0)
    broken_windows = (windows + 3.0 + rng.normal(0, 4, windows.shape)).astype(np.float32)
    broken, _ = fine_tune(detector, broken_windows, dataclasses.replace(cfg.finetune, lr=1e-2),
                          seed=1)
    verdict = validate(detector, broken, holdout, recent, cfg.gate, config.threshold)
    unchanged = all(torch.equal(v, before[k]) for k, v in broken.model.state_dict().items())
    assert not verdict.accepted and verdict.reasons and not unchanged
    # a negative tolerance asks for a real gain: a candidate no better is refused, and the
    # reason says it fell short, not that it was worse
    same = validate(detector, detector, holdout, recent,
                    dataclasses.replace(cfg.gate, tolerance=-0.1), config.threshold)
    assert not same.accepted and "less than the 10% required" in same.reasons[0], same.reasons


@pytest.mark.parametrize("trained", ["lstm", "linear"], indirect=True)
def test_gate_rejects_a_candidate_that_learnt_the_quarantined_incident(trained, train_frame):
    """A candidate fine-tuned on a long incident (channel 0 far off, the relations to the
    others broken) no longer tells the incident's windows from normal ones: the gate's
    incident check refuses it, while a candidate fine-tuned on normal windows passes."""
    detector, config = trained
    windows = training_windows(train_frame, detector.scaler, detector.window).train
    incident = windows[-400:].copy()
    incident[..., 0] = 4.0 + 0.1 * np.random.default_rng(0).standard_normal(
        incident.shape[:2])
    cfg = with_overrides(config, {  # only check 3
        "updater.finetune.epochs": 8, "updater.finetune.lr": 1e-2,
        "updater.finetune.device": "cpu", "updater.gate.tolerance": 10.0,
        "updater.gate.alarm_rate": 1.0}).updater
    holdout, recent = windows[-300:], windows[-600:]
    good, _ = fine_tune(detector, windows, cfg.finetune)
    verdict = validate(detector, good, holdout, recent, cfg.gate, config.threshold, incident)
    assert verdict.accepted, verdict.reasons
    assert verdict.metrics["live_incidents_out"] > 0.9
    learnt, _ = fine_tune(detector, np.concatenate([windows, incident, incident, incident]),
                          cfg.finetune, seed=1)
    verdict = validate(detector, learnt, holdout, recent, cfg.gate, config.threshold, incident)
    assert not verdict.accepted and "learnt incidents" in verdict.reasons[0], verdict.metrics


def test_store_promote_and_rollback_restore_the_exact_weights(trained, train_frame, tmp_path):
    detector, config = trained
    store = ModelStore(tmp_path / "store")
    store.add(detector, note="pretrained")
    store.promote(detector.version)
    windows = training_windows(train_frame, detector.scaler, detector.window).train
    candidate, _ = fine_tune(detector, windows, dataclasses.replace(
        config.updater.finetune, epochs=1, lr=1e-3, device="cpu"), val_fraction=0.0)
    assert candidate.version != detector.version
    store.add(candidate, parent=detector.version, metrics={"candidate_loss": 0.1})
    store.promote(candidate.version)
    assert store.current() == candidate.version
    assert [v["live"] for v in store.versions()] == [False, True]
    assert store.rollback() == detector.version
    restored = store.load()
    for k, v in detector.model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[k], v)
    with pytest.raises(Exception, match="no earlier live version"):
        store.rollback()


def test_online_backtest_runs_rounds_swaps_models_and_recalibrates(trained, synthetic):
    from streamae.backtest import run_backtest
    from streamae.updater.online import OnlineUpdater

    detector, config = trained
    config = with_overrides(config, {**QUICK_ROUNDS, "updater.triggers.every_points": 40})
    live = synthetic.take(synthetic.timestamps >= np.median(synthetic.timestamps))
    updater = OnlineUpdater(config, detector)
    result = run_backtest(live, detector, config, updater=updater)
    assert result.updates and all(r["reason"] == "schedule (windows)" for r in result.updates)
    accepted = [r["candidate"] for r in result.updates if r["accepted"]]
    assert accepted and updater.live.version == accepted[-1]
    # the live model is never trained in place, and scoring went on throughout
    assert np.isfinite(result.score).sum() > 0.8 * len(live)
    versions = {e["model_version"] for e in result.events}
    assert versions <= {detector.version, *accepted}


def test_a_long_running_updater_keeps_only_its_newest_rounds(trained, synthetic,
                                                             monkeypatch, tmp_path):
    from streamae import jobs
    from streamae.updater import online

    monkeypatch.setattr(online, "HISTORY", 2)
    detector, config = trained
    config = with_overrides(config, {**QUICK_ROUNDS, "updater.triggers.every_points": 40})
    live = synthetic.take(synthetic.timestamps >= np.median(synthetic.timestamps))
    updater = online.OnlineUpdater(config, detector)
    report = jobs.backtest(live, detector, config, tmp_path, plots=0, updater=updater).report
    assert updater.rounds_run > 2 and len(updater.rounds) == 2
    accepted = [r for r in updater.rounds if r.accepted]
    # the newest are the ones kept: the last accepted one is the model scoring now
    assert not accepted or accepted[-1].candidate == updater.live.version
    # the report lists the rounds kept and says how many ran
    assert len(report["updates"]) == 2 and report["update_rounds_run"] == updater.rounds_run


def test_an_attached_updater_has_one_live_model_the_pipelines(trained):
    from streamae.pipeline import Pipeline
    from streamae.updater.online import OnlineUpdater

    detector, config = trained
    updater = OnlineUpdater(config, detector)
    pipeline = Pipeline(detector, config)
    updater.attach(pipeline)
    assert pipeline.on_windows == updater.observe and updater.live is detector
    other = dataclasses.replace(detector, version="another")
    pipeline.swap(other)  # an announced model, a rollback: whatever the pipeline scores with
    assert updater.live is other


def test_swap_recalibrates_thresholds_from_the_new_models_scores(trained, synthetic):
    from streamae.pipeline import Pipeline

    detector, config = trained
    pipeline = Pipeline(detector, config)
    pipeline.process(synthetic.take(slice(0, 800)))
    slot = pipeline.keys.slot["sensor-0"]
    before = pipeline.decision.threshold.state[slot].copy()
    scaled = np.abs(np.random.default_rng(0).normal(0, 10, 400))  # a model 10x louder
    pipeline.swap(detector, {"sensor-0": scaled})
    after = pipeline.decision.threshold.state[slot]
    assert not np.array_equal(before, after)
    thresholds = pipeline.decision.threshold.apply(np.array([slot]), np.array([1.0]))
    assert thresholds[0] > np.quantile(scaled, 0.9)  # judged on the new scale at once


def test_per_key_buffer_keeps_each_keys_capacity_and_survives_restore():
    from streamae.updater.buffer import KeyedReplayBuffer

    buf = KeyedReplayBuffer(window=2, channels=1, recent=4, reservoir=2, quarantine=2)
    busy = np.ones((50, 2, 1), np.float32)
    buf.add(busy, np.array(["busy"] * 50), np.arange(50.0))
    buf.add(np.zeros((3, 2, 1), np.float32), np.array(["quiet"] * 3), np.arange(100.0, 103.0),
            protected=np.array([0, 1, 0], bool))
    assert len(buf) == 6 + 2  # busy: 4 recent + 2 reservoir; quiet: 2 admitted, 1 held
    assert buf.keys() == ["busy", "quiet"] and len(buf.newest_of("quiet", 10)) == 2
    data, ts = buf.windows()
    assert len(data) == 8 and np.all(np.diff(ts) >= 0)  # merged in time order
    assert buf.admit("quiet") == 1 and len(buf) == 9
    assert np.array_equal(buf.newest(3)[:, 0, 0], [0, 0, 0])  # the newest are quiet's
    clone = KeyedReplayBuffer(window=2, channels=1, recent=4, reservoir=2, quarantine=2)
    clone.load_state_dict(buf.state_dict())
    for a, b in zip(buf.windows(), clone.windows()):
        np.testing.assert_array_equal(a, b)


def test_online_updater_runs_with_a_per_key_buffer(trained, synthetic):
    from streamae.backtest import run_backtest
    from streamae.updater.online import OnlineUpdater

    detector, config = trained
    config = with_overrides(config, {**QUICK_ROUNDS, "updater.triggers.every_points": 40,
                                     "updater.buffer.scope": "per-key"})
    live = synthetic.take(synthetic.timestamps >= np.median(synthetic.timestamps))
    updater = OnlineUpdater(config, detector)
    result = run_backtest(live, detector, config, updater=updater)
    assert any(r["accepted"] for r in result.updates)
    assert set(updater.buffer.keys()) == set(live.unique_keys())


def test_a_key_in_alarm_for_admit_after_relearns_its_threshold_without_a_new_model(
        trained, synthetic):
    """A sensor whose level moves for good: with ``admit_after`` its threshold re-learns
    on the same model (no round runs here) and it leaves the alarm; without it, a
    threshold that alarms do not teach (learn: calm) never does."""
    from streamae.backtest import run_backtest
    from streamae.clock import iso
    from streamae.updater.online import OnlineUpdater

    detector, config = trained
    live = synthetic.take(synthetic.timestamps >= np.median(synthetic.timestamps))
    values = live.values.copy()
    moved = (live.keys == "sensor-0") & (live.timestamps >= np.median(live.timestamps))
    values[moved] += 4 * live.values[live.keys == "sensor-0"].std(axis=0)
    live = dataclasses.replace(live, values=values, labels=np.zeros(len(live), np.int8))
    in_alarm, resolved = {}, {}  # share of the late shifted points in alarm; resolves
    for admit_after in (0.0, 4 * 3600.0):
        cfg = dataclasses.replace(with_overrides(config, {
            "updater.triggers.min_windows": 10**6, "updater.triggers.drift": "none",
            "updater.relearn.admit_after": admit_after, "updater.relearn.rescale_after": 0.0}),
            threshold=dataclasses.replace(config.threshold, learn="calm"))
        updater = OnlineUpdater(cfg, detector)
        result = run_backtest(live, detector, cfg, updater=updater)
        assert not result.updates and updater.live is detector  # no round, same model
        late = moved & (live.timestamps >= np.quantile(live.timestamps[moved], 0.5))
        in_alarm[admit_after] = result.anomaly[late].mean()
        shift = live.timestamps[moved].min()
        resolved[admit_after] = sum(e["status"] == "resolved" and e["key"] == "sensor-0"
                                    and e["end"] > iso(shift) for e in result.events)
    assert in_alarm[0.0] > 0.9, in_alarm  # the old threshold never gets used to it
    assert in_alarm[4 * 3600.0] < 0.7 * in_alarm[0.0] and resolved[4 * 3600.0] >= 1, (
        in_alarm, resolved)


@pytest.fixture(scope="module", params=["lstm", "ensemble"])
def clean(request):
    """A model trained on the first half of a set with no anomalies, and the second half:
    an LSTM scoring on its own (no novelty memory), and the ensemble with one, as by
    default."""
    from streamae.models.detector import train_detector
    from streamae.synth import generate

    data = generate(n_points=2400, keys=2, channels=3, step_s=432.0, anomalies_per_key=0,
                    seed=5).frame
    half = data.timestamps < np.median(data.timestamps)
    config = small_config(request.param, **({"novelty.size": 0} if request.param == "lstm"
                                            else {}))
    return train_detector(data.take(half), config), config, data.take(~half)


def _late_change(live, change):
    """``live`` with ``change(values, reference)`` applied to sensor-0's channel 0 over its
    second half; returns the frame and the changed rows."""
    values = live.values.copy()
    moved = (live.keys == "sensor-0") & (live.timestamps >= np.median(live.timestamps))
    values[moved, 0] = change(values[moved, 0], live.values[live.keys == "sensor-0", 0])
    return dataclasses.replace(live, values=values, labels=np.zeros(len(live), np.int8)), moved


def _online(config, detector, live, rescale_after):
    from streamae.backtest import run_backtest
    from streamae.updater.online import OnlineUpdater

    cfg = dataclasses.replace(with_overrides(config, {
        "updater.triggers.min_windows": 10**6, "updater.triggers.drift": "none",
        "updater.relearn.rescale_after": rescale_after}),
        threshold=dataclasses.replace(config.threshold, learn="calm"))  # alarms teach nothing
    updater = OnlineUpdater(cfg, detector)
    return run_backtest(live, detector, cfg, updater=updater), updater


def test_a_recalibrated_sensor_is_re_scaled_and_leaves_its_alarm_without_a_new_model(clean):
    """One channel gets a new offset and gain (its relations to the others intact): after
    ``rescale_after`` in alarm that channel alone gets new scaling, the key scores as
    normal again on the same model, and its alarm stays in the events."""
    detector, config, live = clean
    live, moved = _late_change(live, lambda x, ref: ref.mean() + 1.5 * (x - ref.mean())
                               + 3 * ref.std())
    late = moved & (live.timestamps >= np.quantile(live.timestamps[moved], 0.5))
    off, _ = _online(config, detector, live, 0.0)
    on, updater = _online(config, detector, live, 4 * 3600.0)
    assert off.anomaly[late].mean() > 0.8, off.anomaly[late].mean()
    assert [r["channels"] for r in updater.rescaled if r["key"] == "sensor-0"] == [
        [detector.channels[0]]]
    assert on.anomaly[late].mean() < 0.2, on.anomaly[late].mean()
    assert any(e["key"] == "sensor-0" and e["status"] == "resolved" for e in on.events)
    # the decision is an event of the alarm it ended, between its open and its resolve
    mine = [e for e in on.events if e["key"] == "sensor-0"]
    noted = [i for i, e in enumerate(mine) if e["status"] == "rescaled"]
    assert len(noted) == 1
    alarm = [e for e in mine if e["alarm_id"] == mine[noted[0]]["alarm_id"]]
    assert [e["status"] for e in alarm][0] == "open" and alarm[-1]["status"] == "resolved"
    assert updater.live is detector and not on.updates


def test_a_sensor_stuck_at_another_level_is_an_incident_not_a_recalibration(clean):
    """A channel stuck near a new value: mapping its level and spread back does not bring
    back the shape of its signal, so the key is not re-scaled and stays in alarm."""
    detector, config, live = clean
    rng = np.random.default_rng(0)
    live, moved = _late_change(live, lambda x, ref: ref.mean() + 3 * ref.std()
                               + 0.05 * ref.std() * rng.standard_normal(len(x)))
    late = moved & (live.timestamps >= np.quantile(live.timestamps[moved], 0.5))
    result, updater = _online(config, detector, live, 4 * 3600.0)
    assert not [r for r in updater.rescaled if r["key"] == "sensor-0"]
    assert result.anomaly[late].mean() > 0.8, result.anomaly[late].mean()
    # a day and more of it: by default its windows from inside the alarm stay quarantined,
    # never admitted as normal
    assert np.ptp(live.timestamps[moved]) > 24 * 3600 and updater.cfg.relearn.admit_after == 0
    held = updater.buffer.quarantined_of("sensor-0", live.timestamps[moved].min())
    assert len(held) > 0.6 * moved.sum() / config.window.hop


def _alarms(trained, admit_after: float = 3600.0, step: float = 60.0):
    """A factory of updaters that admit a key after ``admit_after`` seconds in alarm (no
    drift trigger, no re-scaling), and a feeder of five windows of one key ``step``
    seconds apart, each filled with ``value``."""
    from streamae.updater.online import OnlineUpdater

    detector, config = trained
    cfg = with_overrides(config, {"updater.triggers.drift": "none",
                                  "updater.relearn.admit_after": admit_after,
                                  "updater.relearn.rescale_after": 0.0})
    shape = (detector.window, len(detector.channels))

    def feed(updater, key, start, protected, value=0.0):
        updater.observe(np.full((5, *shape), value, np.float32),
                        np.full(5, key, dtype=object), start + step * np.arange(5),
                        np.zeros(5), np.full(5, protected))

    return (lambda: OnlineUpdater(cfg, detector)), feed


def test_an_alarm_rejected_by_the_operator_is_never_admitted_and_its_windows_go(trained):
    make, feed = _alarms(trained, step=600.0)  # five windows, 10 min apart
    plain, held = make(), make()
    for updater in (plain, held):
        feed(updater, "k", 0.0, True)  # 40 min in alarm: quarantined
    assert held.reject("k") == 5 and held.buffer.quarantine.size == 0
    for updater in (plain, held):
        feed(updater, "k", 3000.0, True)  # past admit_after
    assert len(plain.buffer) == 10  # taken as a new normal
    assert len(held.buffer) == 0 and held.buffer.quarantine.size == 5  # held: not admitted
    feed(held, "k", 6000.0, False)  # the incident is over: its windows go
    assert held.buffer.quarantine.size == 0 and len(held.buffer) == 5


def test_an_operator_admit_takes_the_whole_alarm_as_normal_and_overrides_a_reject(trained):
    make, feed = _alarms(trained, admit_after=0.0)
    updater = make()
    feed(updater, "k", 0.0, True)
    assert updater.reject("k") == 5  # first taken for an incident
    feed(updater, "k", 300.0, True)
    assert updater.admit("k") == 5 and len(updater.buffer) == 5  # then for normal
    feed(updater, "k", 600.0, True)  # the same alarm goes on: not an incident for the gate
    assert updater.buffer.quarantine.size == 5 and len(updater._snapshot().quarantined) == 0
    feed(updater, "k", 900.0, False)  # it ends: the rest of it joins the buffer too
    assert updater.buffer.quarantine.size == 0 and len(updater.buffer) == 15


def test_an_operators_reject_and_the_alarms_age_outlive_a_restart(trained):
    """A daemon restarted in the middle of a rejected alarm must not take it for a new
    normal once admit_after has passed (the buffer alone was checkpointed before)."""
    make, feed = _alarms(trained)
    before = make()
    feed(before, "held", 0.0, True)
    feed(before, "long", 0.0, True)
    before.reject("held")
    after = make()
    after.load_state_dict(before.state_dict())
    assert after.export_alarms(["held", "long"]) == before.export_alarms(["held", "long"])
    feed(after, "held", 3600.0, True)  # an hour since both alarms began, across the restart
    _, _, buffered, _ = after.buffer.keyed_windows()
    assert len(buffered) == 5 and set(buffered.tolist()) == {"long"}  # taken as normal
    quarantined = after.buffer.quarantine.keys[after.buffer.quarantine.ordered()]
    assert quarantined.tolist() == ["held"] * 5  # still held: never admitted


def test_the_gate_judges_candidates_by_incidents_not_by_an_alarm_taken_as_a_new_normal(
        trained):
    """Once a key's alarm is admitted as a new normal, the windows it goes on
    quarantining until the alarm ends are that normal: the gate must not require a
    candidate to keep flagging them, and they join the buffer when the alarm ends. Other
    keys' alarms still count, and so does the key's next alarm."""
    make, feed = _alarms(trained)
    updater = make()

    def judged() -> set[float]:
        return set(np.unique(updater._snapshot().quarantined[:, 0, 0]).tolist())

    feed(updater, "k", 0.0, True, 1.0)
    feed(updater, "k", 3600.0, True, 1.0)  # an hour in alarm: k taken as a new normal
    assert updater.buffer.quarantine.size == 0 and len(updater.buffer) == 10
    feed(updater, "k", 4000.0, True, 1.0)  # still in the admitted alarm: quarantined again
    feed(updater, "other", 4000.0, True, 2.0)  # an incident of another key
    assert updater.buffer.quarantine.size == 10
    assert judged() == {2.0}
    feed(updater, "k", 5000.0, False)  # k's alarm ends: the rest of it joins its new normal
    assert updater.buffer.quarantine.size == 5 and len(updater.buffer) == 20
    feed(updater, "other", 5000.0, False)  # other's incident ends: it stays quarantined
    feed(updater, "k", 6000.0, True, 3.0)  # a new alarm of k: an incident until shown otherwise
    assert judged() == {2.0, 3.0}


def test_re_scaled_keys_keep_their_scaling_through_state_and_hand_over(trained, synthetic):
    from streamae.pipeline import Pipeline
    from streamae.updater.rescale import Rescale

    detector, config = trained
    one = Pipeline(detector, config)
    one.process(synthetic.take(np.arange(300)))
    slot = one.keys.slot["sensor-0"]
    before = one.keys.mean[slot].copy(), one.keys.std[slot].copy()
    c = len(detector.channels)
    moved = np.zeros(c, bool)
    moved[0] = True
    one.rescale("sensor-0", Rescale(np.full(c, 2.0), np.full(c, 3.0), np.zeros(c),
                                    np.ones(c), moved))
    mean, std = one.keys.mean[slot], one.keys.std[slot]
    assert mean[0] == pytest.approx(before[0][0] + 2 * before[1][0])
    assert std[0] == pytest.approx(3 * before[1][0])
    np.testing.assert_array_equal(mean[1:], before[0][1:])
    again = Pipeline(detector, config)
    again.restore(one.state())
    moved_over = Pipeline(detector, config)
    moved_over.import_keys(one.export_keys(["sensor-0"]))
    for other in (again, moved_over):
        s = other.keys.slot["sensor-0"]
        np.testing.assert_array_equal(other.keys.mean[s], mean)
        np.testing.assert_array_equal(other.keys.std[s], std)


def test_a_background_round_never_reads_the_buffer_the_scoring_thread_fills(trained):
    """The round learns from a copy taken on the scoring thread: while it runs, new keys
    keep arriving in a per-key buffer (and here the live buffer is made unreadable) and
    the round still completes."""
    import threading

    from streamae.updater import online

    detector, config = trained
    config = with_overrides(config, {**QUICK_ROUNDS, "updater.buffer.scope": "per-key"})
    updater = online.OnlineUpdater(config, detector, background=True)
    rng = np.random.default_rng(0)
    shape = (detector.window, len(detector.channels))

    def feed(key, n, t0):
        updater.observe(rng.normal(size=(n, *shape)).astype(np.float32),
                        np.array([key] * n, dtype=object), t0 + np.arange(n, dtype=float),
                        np.zeros(n), np.zeros(n, dtype=bool))

    for k in range(3):
        feed(f"k{k}", 40, 0.0)
    live_buffer, real = updater.buffer, online.fine_tune

    class Unreadable:
        def __getattr__(self, name):
            raise AssertionError(f"the round read the live buffer ({name})")

    def busy_fine_tune(*args, **kwargs):
        updater.buffer = Unreadable()  # from here to the end of the round
        return real(*args, **kwargs)

    arriving = threading.Event()

    def scoring_thread():
        n = 0
        while not arriving.is_set():
            live_buffer.add(rng.normal(size=(2, *shape)).astype(np.float32),
                            np.array([f"new{n}"] * 2, dtype=object), np.array([1e3, 1e3 + 1]),
                            np.zeros(2, dtype=bool))
            n += 1

    online.fine_tune = busy_fine_tune
    other = threading.Thread(target=scoring_thread)
    try:
        updater.request()
        updater.poll(100.0)
        other.start()
        updater._thread.join(120)
    finally:
        arriving.set()
        other.join()
        online.fine_tune = real
        updater.buffer = live_buffer
    [round_] = updater.rounds
    assert not any(r.startswith("error") for r in round_.reasons), round_.reasons
    assert round_.accepted
    update = updater.poll(101.0)  # the round ran to its end: its model waits to swap in
    assert update is not None and update.model is not None
    assert set(update.calibration) == {"k0", "k1", "k2"}


def test_signed_control_commands_only_when_signing_is_on(trained, monkeypatch, tmp_path):
    import json

    from streamae.daemon.runner import Daemon
    from streamae.daemon.signing import sign
    from streamae.errors import ConfigError

    detector, config = trained
    config = dataclasses.replace(config, daemon=dataclasses.replace(
        config.daemon, signature_key_env="STREAMAE_TEST_KEY", state_dir=str(tmp_path)),
        updater=dataclasses.replace(config.updater, enabled=True))
    monkeypatch.delenv("STREAMAE_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="signature_key_env"):
        Daemon(config, detector)
    monkeypatch.setenv("STREAMAE_TEST_KEY", "fleet-secret")
    refused = []
    daemon = Daemon(config, detector)
    updates = daemon.updates
    updates.refused = lambda *a: refused.append(a)
    for doc in ({"command": "update"}, sign({"command": "update"}, b"other key"),
                {**sign({"command": "update"}, b"fleet-secret"), "command": "admit"}):
        updates._command(json.dumps(doc).encode(), daemon.pipeline)
    assert len(refused) == 3 and not updates.updater._manual
    updates._command(json.dumps(sign({"command": "update"}, b"fleet-secret")).encode(),
                     daemon.pipeline)
    assert updates.updater._manual and len(refused) == 3


def test_control_reject_holds_the_key_and_is_an_event_of_its_open_alarm(
        trained, synthetic, tmp_path):
    """``control reject`` holds the key, and goes out as a ``rejected`` event of the key's
    open alarm (schema-valid, same alarm id); a key with no alarm here gets no event."""
    import json

    import jsonschema

    from streamae.daemon.runner import Daemon
    from test_pipeline import SCHEMA

    detector, config = trained
    config = dataclasses.replace(config, daemon=dataclasses.replace(
        config.daemon, state_dir=str(tmp_path)), updater=dataclasses.replace(
        config.updater, enabled=True))
    daemon = Daemon(config, detector)
    updates, pipeline = daemon.updates, daemon.pipeline
    opened = []
    for chunk in np.array_split(synthetic.event_time_order(), 60):
        opened += [e for e in pipeline.process(synthetic.take(chunk)).events
                   if e["status"] == "open" and e["key"] in pipeline.events.open]
        if opened:
            break
    key = opened[-1]["key"]
    for k in (key, "sensor-never-seen"):
        updates._command(json.dumps({"command": "reject", "key": k}).encode(), pipeline)
    assert updates.updater._held == {key, "sensor-never-seen"}
    notes = pipeline.take_notes()
    assert [(n["key"], n["status"]) for n in notes] == [(key, "rejected")]
    jsonschema.validate(notes[0], SCHEMA)
    assert notes[0]["alarm_id"] == opened[-1]["alarm_id"] and notes[0]["end"] is None


def test_a_daemon_following_announced_models_adapts_keys_but_trains_nothing(
        trained, tmp_path):
    import json

    from streamae.daemon.runner import Daemon

    detector, config = trained
    config = dataclasses.replace(config, daemon=dataclasses.replace(
        config.daemon, state_dir=str(tmp_path), models_topic="models"))
    assert not config.updater.enabled
    daemon = Daemon(config, detector)
    updates = daemon.updates
    assert updates.follower and updates.updater.cfg.relearn.rescale_after > 0
    assert updates.updater.cfg.buffer.recent <= 2048 and updates.updater.store is None
    updates._command(json.dumps({"command": "update"}).encode(), daemon.pipeline)
    assert updates.updater._reason(1e12) is None  # never a round, whatever asks
    plain = dataclasses.replace(config, daemon=dataclasses.replace(config.daemon,
                                                                   models_topic=None))
    assert Daemon(plain, detector).updates is None


def test_a_recalibrated_command_line_is_mapped_exactly_and_a_spread_alone_comes_last():
    """A 0/1 channel (a command line) with a new offset and gain maps back exactly although
    its commands come at another rate in the alarm than before it (its mean and spread
    would not); a channel whose spread alone moved is left out of the first mapping."""
    from streamae.updater.rescale import propose

    rng = np.random.default_rng(1)
    n, window, hop = 64, 16, 8

    def windows(rate, noise_sd):
        cmd = (rng.random((n, window)) < rate).astype(np.float64) * 4.0  # scaled units
        level = rng.normal(0.0, 1.0, (n, window))
        noisy = rng.normal(0.0, noise_sd, (n, window))
        return np.stack([cmd, level, noisy], axis=-1).astype(np.float32)

    normal = windows(0.05, 1.0)
    original = windows(0.30, 3.0)  # more commands, and channel 2 three times as noisy
    alarm = original.copy()
    alarm[..., 0] = 1.5 * alarm[..., 0] + 2.0  # recalibrated: offset and gain
    alarm[..., 1] = 1.2 * alarm[..., 1] + 3.0
    first = propose(alarm, normal, hop, levels_only=True)
    assert first.moved.tolist() == [True, True, False]
    np.testing.assert_allclose(first.windows(alarm)[..., 0], original[..., 0], atol=1e-5)
    every = propose(alarm, normal, hop)
    assert every.moved.tolist() == [True, True, True]


def test_a_channel_at_the_input_clip_is_never_re_scaled():
    """A channel constant in training that settles at another level sits at the clip in
    scaled units: its true level is unknown, so no change of its raw mean and spread can
    be judged from it (the mapping of clipped values looked like a fix, and the key was
    re-scaled again and again while it stayed in alarm)."""
    from streamae.updater.rescale import propose

    rng = np.random.default_rng(4)
    n, window, hop = 48, 16, 8
    normal = rng.normal(0.0, 1.0, (n, window, 2)).astype(np.float32)
    normal[..., 0] = 0.0  # flat in normal
    alarm = rng.normal(0.0, 1.0, (n, window, 2)).astype(np.float32)
    alarm[..., 0] = 10.0  # settled elsewhere: at the clip
    assert propose(alarm, normal, hop).moved.tolist() == [True, False]  # unclipped scaling
    assert propose(alarm, normal, hop, clip=10.0) is None
    alarm[..., 1] += 5.0  # a channel that did move within range still is
    assert propose(alarm, normal, hop, clip=10.0).moved.tolist() == [False, True]


def test_threshold_state_saved_with_fewer_columns_loads_with_the_new_ones_at_their_fill():
    """Alarm state from a version before the last-crossing column restores (and moves with
    a partition) with that column unset, so it never reads past a row."""
    from streamae.config import AlarmConfig
    from streamae.threshold.alarm import Alarm
    from streamae.threshold.alarm_kernel import A_CROSSED_T, ALARM_COLS

    alarm = Alarm(AlarmConfig())
    old = {"state": alarm.state[:, :A_CROSSED_T].copy()}
    old["state"][:, 0] = 1.0
    alarm.load_state_dict(old)
    assert alarm.state.shape[1] == ALARM_COLS and np.isnan(alarm.state[:, A_CROSSED_T]).all()
    other = Alarm(AlarmConfig())
    other.put(np.array([3]), {"state": old["state"][:1]})
    assert other.state[3, 0] == 1.0 and np.isnan(other.state[3, A_CROSSED_T])


def test_a_short_alarm_on_a_daily_cycle_moves_only_the_recalibrated_channel():
    """An alarm's first hours sit at one phase of a daily cycle that every channel shares:
    the unmoved channels' level there is that of the same hours of a normal day, not a
    move; the recalibrated channel is mapped onto those hours, close to what it was."""
    from streamae.updater.rescale import propose

    rng = np.random.default_rng(2)
    window, hop, day = 16, 8, 96  # points

    def windows(start, count):
        t = start + np.arange(count * hop)
        x = np.sin(2 * np.pi * t / day)[:, None] * 2.0 + rng.normal(0, 0.3, (len(t), 3))
        # windows ending every hop points, the newest hop of each being new
        padded = np.concatenate([np.zeros((window - hop, 3)), x])
        return np.stack([padded[i * hop: i * hop + window] for i in range(count)]
                        ).astype(np.float32)

    normal = windows(0, 4 * day // hop)
    original = windows(4 * day + day // 8, day // (4 * hop))  # a quarter-day, at the peak
    alarm = original.copy()
    alarm[..., 0] = 1.5 * alarm[..., 0] + 4.0
    change = propose(alarm, normal, hop, levels_only=True)
    assert change.moved.tolist() == [True, False, False]
    mapped = change.windows(alarm)[:, -hop:, 0]
    assert abs(mapped.mean() - original[:, -hop:, 0].mean()) < 0.3


def test_a_replay_from_before_any_checkpoint_starts_the_updater_from_nothing(trained):
    """A daemon whose first commit failed replays from the start: the windows and alarms
    the updater saw must not count twice (or an alarm's age run on from before)."""
    make, feed = _alarms(trained)
    updater = make()
    feed(updater, "calm", 0.0, False)
    feed(updater, "k", 0.0, True)
    updater.reject("k")
    updater.load_state_dict({})
    assert len(updater.buffer) == 0 and updater.buffer.quarantine.size == 0
    assert updater.export_alarms(["k"]) == {}


def test_an_operators_reject_moves_with_its_partition(trained, tmp_path):
    """A key's partition moving to another daemon (through the state topic's record)
    takes the updater's view of its alarm along: the new owner does not take a rejected
    incident for a new normal once admit_after has passed, and the old one forgets it."""
    from streamae.daemon.runner import Daemon
    from streamae.daemon.state_topic import Snapshot, decode, encode
    from streamae.types import Frame

    detector, _ = trained
    make, feed = _alarms(trained)
    cfg = with_overrides(make().config, {"updater.enabled": True})
    daemons = [Daemon(with_overrides(cfg, {"daemon.state_dir": str(tmp_path / name)}), detector)
               for name in ("old", "new")]
    old, new = daemons
    n = detector.window + 8
    old.pipeline.on_windows = None  # the updater's view of the key comes from feed alone
    old.pipeline.process(Frame(np.arange(n, dtype=np.float64), np.full(n, "k", dtype=object),
                               np.zeros((n, len(detector.channels)), np.float32),
                               detector.channels))
    partition = ("metrics", 0)
    old.owners.take(["k"], partition)
    feed(old.updates.updater, "k", 0.0, True)
    old.updates.updater.reject("k")
    alarm = old.updates.updater.export_alarms(["k"])
    assert alarm == {"k": {"since": 0.0, "windows": 5, "held": True, "admitted": False}}
    _, moved, snap = decode(encode("g", partition, Snapshot(10, old._export_keys(["k"]))))
    assert new._take_over(moved, snap)
    assert new.updates.updater.export_alarms(["k"]) == alarm
    for start in (3600.0, 7300.0):  # over an hour after the new owner first saw it
        feed(new.updates.updater, "k", start, True)
    assert len(new.updates.updater.buffer) == 0  # still held: never taken as normal
    feed(old.updates.updater, "k", 600.0, True)  # the old owner still held some of it
    assert old.updates.updater.buffer.quarantine.size == 5
    old._release({partition})
    assert old.updates.updater.export_alarms(["k"]) == {}
    assert old.updates.updater.buffer.quarantine.size == 0  # an admit-all must not learn it


def test_a_control_message_with_a_key_that_is_not_text_is_ignored(trained, tmp_path):
    """A reject with a numeric key must not put it beside text keys (the checkpoint sorts
    them: the daemon stopped at its next commit)."""
    from streamae.daemon.runner import Daemon

    detector, _ = trained
    make, feed = _alarms(trained)
    cfg = with_overrides(make().config, {"updater.enabled": True,
                                         "daemon.state_dir": str(tmp_path)})
    daemon = Daemon(cfg, detector)
    updater = daemon.updates.updater
    feed(updater, "k", 0.0, True)
    daemon.updates._command(b'{"command": "reject", "key": 7}', daemon.pipeline)
    daemon.updates._command(b'["reject"]', daemon.pipeline)
    assert updater.export_alarms(["k"])["k"]["held"] is False
    daemon.updates._command(b'{"command": "reject", "key": "k"}', daemon.pipeline)
    assert updater.export_alarms(["k"])["k"]["held"] is True
    daemon.updates.state_arrays()  # the checkpoint sorts the keys: no mixed types
