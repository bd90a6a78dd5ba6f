import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np

from streamae.backtest import run_backtest
from streamae.clock import EventClock
from streamae.evaluate.metrics import roc_auc
from streamae.pipeline import Output, Pipeline
from streamae.synth import generate

SCHEMA = json.loads((Path(__file__).parents[1] / "streamae/schemas/event-v1.json").read_text())


def run(detector, config, frame, cuts):
    clock = EventClock()
    pipeline = Pipeline(detector, config, clock)
    parts = []
    for idx in np.split(np.arange(len(frame)), cuts):
        chunk = frame.take(idx)
        clock.advance(float(chunk.timestamps.max()))
        parts.append(pipeline.process(chunk))
    parts.append(pipeline.flush())
    return Output.concat(parts)


def test_split_stream_scores_equal_whole_stream(trained, synthetic):
    detector, config = trained
    whole = run(detector, config, synthetic, [])
    split = run(detector, config, synthetic, [7, 333, 334, 1001])
    a, b = np.argsort(whole.row), np.argsort(split.row)
    np.testing.assert_array_equal(whole.row[a], split.row[b])
    np.testing.assert_allclose(whole.score[a], split.score[b], rtol=1e-5, atol=1e-5,
                               equal_nan=True)  # float32 batches differ
    np.testing.assert_array_equal(whole.anomaly[a], split.anomaly[b])
    assert [e["event_id"] for e in whole.events] == [e["event_id"] for e in split.events]


def test_one_row_per_input_row_and_events_follow_schema(trained, synthetic):
    detector, config = trained
    result = run_backtest(synthetic, detector, config, batch_rows=500)
    assert len(result.score) == len(synthetic)
    # warm-up: the points of a key's first window before its newest hop (no calibrated
    # score: too little past); everything else is scored, the tail after the flush
    w, hop = detector.window, config.window.hop
    unscored = np.isnan(result.score)
    for key in synthetic.unique_keys():
        rows = np.flatnonzero(synthetic.keys == key)
        assert unscored[rows].tolist() == [True] * (w - hop) + [False] * (len(rows) - w + hop)
    assert result.events, "the injected anomalies should raise alarms"
    for event in result.events:
        jsonschema.validate(event, SCHEMA)
    opened = [e for e in result.events if e["status"] == "open"]
    resolved = [e for e in result.events if e["status"] == "resolved"]
    assert len(opened) >= len(resolved) >= len(opened) - 2
    assert len({e["event_id"] for e in result.events}) == len(result.events)


def test_alarms_find_injected_anomalies(trained, synthetic):
    detector, config = trained
    result = run_backtest(synthetic, detector, config)
    late = synthetic.timestamps > np.median(synthetic.timestamps)
    labels = synthetic.labels.astype(bool)
    auc = roc_auc(labels[late], result.score[late])
    assert auc > 0.7, auc
    assert result.anomaly[labels & late].mean() > 2 * result.anomaly[~labels & late].mean()


def test_bad_points_resolve_with_status_and_are_counted(trained):
    detector, config = trained
    frame = generate(n_points=100, keys=1, channels=3, anomalies_per_key=0, seed=2).frame
    frame.values[10, 1] = np.nan
    frame.timestamps[20] = frame.timestamps[19]          # duplicate
    frame.timestamps[30] = frame.timestamps[29] - 300.0  # late
    result = run_backtest(frame, detector, config)
    assert len(result.score) == len(frame)
    assert result.counts["nan_filled"] == 1
    assert result.counts["duplicate"] + result.counts["late"] == 2
    assert np.isnan(result.score[[20]]).all()


def test_new_key_uses_global_scaling(trained, synthetic):
    detector, config = trained
    frame = synthetic.take(synthetic.keys == "sensor-0")
    frame.keys = np.full(len(frame), "brand-new", dtype=object)
    result = run_backtest(frame, detector, config)
    assert np.isfinite(result.score).mean() > 0.9


def test_state_restores_with_keys_first_seen_in_any_order(trained, synthetic):
    # keys are numbered as they arrive; a restart must keep that numbering (it once
    # re-numbered them in sorted order and refused the state)
    detector, config = trained
    frame = synthetic.take(synthetic.event_time_order())
    first = np.flatnonzero(frame.keys == "sensor-1")[0]
    order = np.r_[first, np.delete(np.arange(len(frame)), first)]
    frame = frame.take(order)
    half = len(frame) // 2
    whole = Pipeline(detector, config, EventClock())
    expected = whole.process(frame).score
    before = Pipeline(detector, config, EventClock())
    head = np.r_[before.process(frame.take(slice(0, 1))).score,  # sensor-1 arrives alone
                 before.process(frame.take(slice(1, half))).score]
    assert before.keys.names[:2] == ["sensor-1", "sensor-0"]
    after = Pipeline(detector, config, EventClock())
    after.restore(before.state())
    tail = after.process(frame.take(slice(half, len(frame)))).score
    np.testing.assert_allclose(np.r_[head, tail], expected, rtol=1e-5, equal_nan=True)


def test_keys_handed_to_another_pipeline_carry_on_without_rewarming(trained, synthetic):
    # how a partition moves between daemons: its keys' state goes from one pipeline to
    # another that already holds other keys; scores, thresholds and events carry on
    # exactly, and the pipeline they left forgets them
    detector, config = trained
    # a readier threshold and every alarm kept (none pruned beside a stronger one), so
    # that the moved key has events after the move whatever the model
    config = dataclasses.replace(
        config, alarm=dataclasses.replace(config.alarm, prune=0.0),
        threshold=dataclasses.replace(config.threshold, risk=1e-3))
    frame = synthetic.take(synthetic.event_time_order())
    whole = Pipeline(detector, config, EventClock())
    want = whole.process(frame)
    half = len(frame) // 2
    head, tail = frame.take(slice(0, half)), frame.take(slice(half, len(frame)))
    mover = tail.keys == "sensor-1"
    first, second = Pipeline(detector, config, EventClock()), Pipeline(detector, config,
                                                                       EventClock())
    first.process(head)
    second.process(head.take(head.keys == "sensor-0"))  # it has a key of its own
    second.forget_keys(["sensor-0"])
    second.process(head.take(head.keys == "sensor-0"))  # forgotten: warms up again
    moved = first.export_keys(["sensor-1"])
    first.forget_keys(["sensor-1"])
    second.import_keys(moved)
    got_tail = second.process(tail.take(mover))
    stayed = first.process(tail.take(~mover))
    assert not first.windows.count[first.keys.slot["sensor-1"]], "forgotten where it left"
    assert len(stayed.score) and not np.isnan(stayed.score).all()

    def by_time(out):
        keep = out.key == "sensor-1"
        return {t: (s, h) for t, s, h in zip(out.ts[keep], out.score[keep],
                                              out.threshold[keep])}

    whole_at, moved_at = by_time(want), by_time(got_tail)
    assert moved_at and set(moved_at) <= set(whole_at)
    got_v = np.array([moved_at[t] for t in sorted(moved_at)])
    want_v = np.array([whole_at[t] for t in sorted(moved_at)])
    assert not np.isnan(got_v).any(), "the first points after the move are scored and judged"
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5)
    later = [e for e in want.events if e["key"] == "sensor-1"
             and e["at"] > first_ts(tail.take(mover))]
    assert later, "the scenario must have events after the move"
    assert [e["event_id"] for e in got_tail.events] == [e["event_id"] for e in later]


def first_ts(frame):
    from streamae.clock import iso
    return iso(float(frame.timestamps.min()) - 1e-6)


def test_windows_touching_an_alarm_or_a_crossing_are_protected_and_others_are_not(
        trained, synthetic):
    """The updater's hook learns which windows overlap an alarm or a point over the
    threshold (one that opened no alarm too) window by window, even when the alarm opens
    late in one large batch."""
    detector, config = trained
    pipeline = Pipeline(detector, config)
    seen = []
    pipeline.on_windows = lambda data, keys, ts, scores, protected, *_: seen.append(
        (keys, ts, protected))
    out = pipeline.process(synthetic)  # one batch: alarms open and close inside it
    crossed = out.score >= config.alarm.enter_level * out.threshold
    assert (crossed & ~out.anomaly).any(), "the scenario must cross without an alarm too"
    alarm_ts = {k: out.ts[(out.key == k) & (out.anomaly | crossed)]
                for k in synthetic.unique_keys()}
    keys = np.concatenate([s[0] for s in seen])
    ends = np.concatenate([s[1] for s in seen])
    protected = np.concatenate([s[2] for s in seen])
    step = np.median(np.diff(np.unique(synthetic.timestamps)))
    start = ends - (config.window.size - 1) * step
    touches = np.array([((alarm_ts[k] >= a) & (alarm_ts[k] <= b)).any()
                        for k, a, b in zip(keys, start, ends)])
    assert touches.any() and (~touches).any()
    # the resolving point counts as in alarm: a window may start exactly there
    resolve_only = protected & ~touches
    assert resolve_only.sum() <= len(synthetic.unique_keys()) * 20, resolve_only.sum()
    assert protected[touches].all()


def test_an_announced_model_swap_leaves_every_key_a_threshold_at_once(trained, synthetic):
    # a daemon following announced models swaps without calibration data: each key's
    # threshold restarts from the new model's held-out scores, not after init_points of
    # its own, so no scored point after the swap goes without a threshold
    detector, config = trained
    frame = synthetic.take(synthetic.event_time_order())
    half = len(frame) // 2
    pipeline = Pipeline(detector, config, EventClock())
    pipeline.process(frame.take(slice(0, half)))
    other = detector.recalibrated(*_held_out(detector, synthetic))
    pipeline.swap(other)
    pipeline.rewarm_thresholds()
    out = pipeline.process(frame.take(slice(half, len(frame))))
    scored = np.isfinite(out.score)
    assert scored.sum() > 100 and np.isfinite(out.threshold[scored]).all()


def _held_out(detector, frame):
    """Held-out windows of ``frame`` (each key's newest share) and their keys."""
    from streamae.models.dataset import training_windows

    split = training_windows(frame, detector.scaler, detector.window, val_fraction=0.3)
    return split.val, split.val_keys


def test_a_model_scaling_its_inputs_its_own_way_gets_windows_in_its_scaling(trained, synthetic):
    # a model trained apart (not fine-tuned from the live one) comes with its own scaling:
    # after the swap every key's window holds what that model would have scaled
    from streamae.models.scaler import Scaler

    detector, config = trained
    frame = synthetic.take(synthetic.event_time_order())
    half = frame.take(slice(0, len(frame) // 2))
    stretched = dataclasses.replace(half, values=half.values * 2.0 + 5.0)
    other = dataclasses.replace(detector, scaler=Scaler.fit(stretched, detector.scaler.clip))
    swapped = Pipeline(detector, config, EventClock())
    swapped.process(half)
    swapped.swap(other)
    native = Pipeline(other, config, EventClock())
    native.process(half)
    n = len(native.keys.names)
    assert swapped.keys.names == native.keys.names
    np.testing.assert_allclose(swapped.keys.mean, native.keys.mean)
    np.testing.assert_allclose(swapped.windows.ring[:n], native.windows.ring[:n], atol=1e-4)
    new_key = frame.take(frame.keys == frame.keys[0])
    new_key = dataclasses.replace(new_key, keys=np.full(len(new_key), "fresh", dtype=object))
    swapped.process(new_key.take(slice(0, 5)))
    np.testing.assert_allclose(swapped.keys.mean[swapped.keys.slot["fresh"]],
                               other.scaler.stats("fresh")[0])
