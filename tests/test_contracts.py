"""Contracts every implementation of a concept keeps, run over all of them: each threshold
kind, each input format and each baseline. A new one is covered by being registered."""

from __future__ import annotations

import numpy as np
import pytest

from streamae.config import AlarmConfig, InputConfig, ThresholdConfig
from streamae.evaluate.baselines import BASELINES
from streamae.formats import FORMATS, BadMessage, build_decoder
from streamae.threshold import THRESHOLDS, Decision, build_threshold
from streamae.types import Frame

# ----------------------------------------------------------------------- thresholds
SMALL = {"init_points": 50, "memory": 2000}


def config(kind: str) -> ThresholdConfig:
    return ThresholdConfig(kind=kind, **SMALL)


def scores(n: int, seed: int) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).standard_normal(n))


@pytest.mark.parametrize("kind", sorted(THRESHOLDS))
def test_threshold_same_input_same_thresholds(kind):
    x, slots = scores(3000, 0), np.zeros(3000, dtype=np.int64)
    a = build_threshold(config(kind)).apply(slots, x)
    b = build_threshold(config(kind)).apply(slots, x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", sorted(THRESHOLDS))
def test_threshold_restored_mid_stream_goes_on_as_if_never_stopped(kind):
    x, slots = scores(3000, 1), np.zeros(3000, dtype=np.int64)
    whole = build_threshold(config(kind)).apply(slots, x)
    first = build_threshold(config(kind))
    head = first.apply(slots[:1700], x[:1700])
    second = build_threshold(config(kind))
    second.load_state_dict(first.state_dict())
    np.testing.assert_array_equal(np.r_[head, second.apply(slots[1700:], x[1700:])], whole)


@pytest.mark.parametrize("kind", sorted(THRESHOLDS))
def test_threshold_keys_do_not_see_each_other(kind):
    a, b = scores(2000, 2), 5.0 * scores(2000, 3)
    mixed = build_threshold(config(kind)).apply(np.tile([0, 1], 2000), np.c_[a, b].ravel())
    alone = build_threshold(config(kind)).apply(np.zeros(2000, dtype=np.int64), a)
    np.testing.assert_array_equal(mixed[0::2], alone)


@pytest.mark.parametrize("kind", sorted(THRESHOLDS))
def test_threshold_passes_normal_flags_a_spike_and_survives_nan(kind):
    x = scores(4000, 4)
    x[2500] = np.nan
    x[3500] = 50.0
    thr = build_threshold(config(kind)).apply(np.zeros(4000, dtype=np.int64), x)
    warm = slice(1000, 3400)
    assert np.isfinite(thr[warm]).all()
    ok = np.isfinite(x[warm])
    assert np.mean(x[warm][ok] > thr[warm][ok]) < 0.02
    assert x[3500] > thr[3500]


@pytest.mark.parametrize("kind", sorted(THRESHOLDS))
def test_decision_handing_keys_over_keeps_their_alarms_and_thresholds(kind):
    """Keys taken from one decision stage and put into another (a partition moving to
    another daemon) go on exactly as in the first."""
    n = 3000
    x = scores(2 * n, 5)
    x[2 * 2000: 2 * 2000 + 20] = 30.0  # an alarm on both keys, open at the hand-over
    slots, ts = np.tile([0, 1], n), np.repeat(np.arange(n, dtype=np.float64), 2)
    cut = 2 * 2010
    alarm = AlarmConfig()
    one = Decision(config(kind), alarm)
    one.ensure(2)
    thr_a, out_a = one.apply(slots, ts, x)
    first, other = Decision(config(kind), alarm), Decision(config(kind), alarm)
    first.ensure(2)
    first.apply(slots[:cut], ts[:cut], x[:cut])
    moved = np.array([0, 1])
    other.put(moved, first.take(moved))
    thr_b, out_b = other.apply(slots[cut:], ts[cut:], x[cut:])
    np.testing.assert_array_equal(thr_b, thr_a[cut:])
    np.testing.assert_array_equal(out_b.anomaly, out_a.anomaly[cut:])
    assert out_a.anomaly[cut]  # the alarm was open when the keys moved


# -------------------------------------------------------------------------- formats
VALID = {
    "json": b'{"timestamp": 1767225600, "key": "pump-1", "value": 1.5}',
    "telegraf": b'{"fields": {"value": 1.5}, "name": "cpu", "tags": {"host": "web-1"}, '
                b'"timestamp": 1767225600}',
    "influx": b"cpu,host=web-1 value=1.5 1767225600000000000",
    "prometheus": b'{"timestamp": "2026-01-01T00:00:00Z", "value": "1.5", "name": "value", '
                  b'"labels": {"__name__": "value", "instance": "web-1:9100"}}',
    "alertmanager": b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", '
                    b'"labels": {"alertname": "Disk"}, "startsAt": "2026-01-01T00:00:05Z", '
                    b'"fingerprint": "a"}]}',
}
GARBAGE = [b"", b"\xff\xfe\x00", b"{", b"[1, 2", b"null", b"42", b'"text"', b"[]",
           b'{"timestamp": 1767225600}', b"value=1.5", b"a,b=c d=e f"]


def decoder(fmt: str):
    return build_decoder(InputConfig(format=fmt, alert_interval=60.0), ["value"], "series")


def test_every_format_has_a_contract_sample():
    assert set(VALID) == set(FORMATS)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_format_decodes_its_sample_the_same_every_time(fmt):
    first, again = decoder(fmt).decode(VALID[fmt], 1767225600.0), decoder(fmt).decode(
        VALID[fmt], 1767225600.0)
    assert first == again
    for p in first:
        assert np.isfinite(p.ts) and p.key and len(p.values) == 1


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("raw", GARBAGE, ids=repr)
def test_format_rejects_garbage_with_a_reason_and_nothing_else(fmt, raw):
    """Any bytes either decode or raise BadMessage (a dead letter with its reason): never
    another exception, which would stop the daemon."""
    try:
        points = decoder(fmt).decode(raw, 1767225600.0)
    except BadMessage as err:
        assert err.kind and str(err)
    else:
        assert isinstance(points, list)


# ------------------------------------------------------------------------ baselines
def frame(n: int, seed: int, keys: int = 1) -> Frame:
    rng = np.random.default_rng(seed)
    x = np.sin(np.arange(n) / 6.0)[:, None] + 0.05 * rng.standard_normal((n, 2))
    names = np.array([f"k{i % keys}" for i in range(n)], dtype=object)
    return Frame(60.0 * (np.arange(n) // keys), names, x.astype(np.float32), ["a", "b"],
                 np.zeros(n, dtype=np.int8))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_same_data_same_scores(name):
    train, test = frame(800, 1), frame(400, 2)
    a = BASELINES[name]().fit(train).score(test)
    b = BASELINES[name]().fit(train).score(test)
    assert a.shape == (len(test),)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_scores_every_row_of_every_key(name):
    train, test = frame(1200, 3, keys=2), frame(1200, 4, keys=2)  # past every warm-up
    score = BASELINES[name]().fit(train).score(test)
    assert score.shape == (len(test),)
    for key in ("k0", "k1"):
        assert np.isfinite(score[test.keys == key][-100:]).all()

