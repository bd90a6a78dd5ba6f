"""Input formats on real-looking payloads: points out, or a BadMessage with a reason."""

import math

import numpy as np

import pytest

from streamae.config import InputConfig
from streamae.formats import BadMessage, build_decoder

UNI, MULTI = ["value"], ["usage_user", "usage_system", "usage_idle"]


def decoder(fmt, channels=UNI, **kw):
    return build_decoder(InputConfig(format=fmt, **kw), channels, "series")


def test_json_univariate_iso_and_epoch():
    d = decoder("json")
    [p] = d.decode(b'{"timestamp": "2026-01-01T00:00:00Z", "key": "pump-1", "value": 1.5}')
    assert p == (1767225600.0, "pump-1", [1.5])
    [p] = d.decode(b'{"timestamp": 1767225600123, "key": 7, "value": 2, "site": "x"}')
    assert p.ts == pytest.approx(1767225600.123) and p.key == "7" and p.values == [2.0]


def test_json_multichannel_array_and_nan_literal():
    d = decoder("json", MULTI)
    pts = d.decode(b'[{"timestamp": 1767225600, "key": "h1", "values": '
                   b'{"usage_user": 3.5, "usage_idle": NaN, "other": 1}},'
                   b'{"timestamp": 1767225660, "key": "h1", "values": {"usage_system": null}}]')
    assert pts[0].values[0] == 3.5 and math.isnan(pts[0].values[1]) and math.isnan(pts[0].values[2])
    assert math.isnan(pts[1].values[0]) and math.isnan(pts[1].values[1])


def test_json_custom_fields_and_no_key():
    d = decoder("json", timestamp_field="ts", value_field="v", key_fields=["site", "id"])
    [p] = d.decode(b'{"ts": 1767225600, "site": "a", "id": 3, "v": 1}')
    assert p.key == "site=a,id=3"
    [p] = decoder("json", key_fields=[]).decode(b'{"timestamp": 1767225600, "value": 1}')
    assert p.key == "series"


@pytest.mark.parametrize("raw, kind, words", [
    (b'{"timestamp": 1767225600, "key": "a", "value": 1', "parse", "JSON"),
    (b'{"key": "a", "value": 1}', "missing_field", "timestamp"),
    (b'{"timestamp": 1767225600, "value": 1}', "missing_field", "key"),
    (b'{"timestamp": 1767225600, "key": "a"}', "missing_field", "value"),
    (b'{"timestamp": 1767225600, "key": "a", "value": "high"}', "invalid", "number"),
    (b'{"timestamp": 1767225600, "key": "a", "value": true}', "invalid", "number"),
    (b'{"timestamp": 1767225600, "key": "a", "value": 1e300}', "out_of_range", "limit"),
    (b'{"timestamp": "yesterday", "key": "a", "value": 1}', "invalid", "ISO 8601"),
    (b'{"timestamp": -5, "key": "a", "value": 1}', "invalid", "1970"),
    (b'{"timestamp": 1767225600, "key": {"x": 1}, "value": 1}', "invalid", "text or a number"),
    (b'"just a string"', "invalid", "object"),
])
def test_json_rejects_with_reason(raw, kind, words):
    with pytest.raises(BadMessage) as err:
        decoder("json").decode(raw)
    assert err.value.kind == kind and words in str(err.value)


TELEGRAF = (b'{"fields": {"usage_user": 1.5, "usage_system": 0.5, "usage_idle": 98, '
            b'"state": "ok"}, "name": "cpu", "tags": {"cpu": "cpu0", "host": "web-1"}, '
            b'"timestamp": 1767225600}')


def test_telegraf_multichannel_row_keyed_by_tags():
    [p] = decoder("telegraf", MULTI).decode(TELEGRAF)
    assert p.key == "cpu,cpu=cpu0,host=web-1" and p.values == [1.5, 0.5, 98.0]
    [p] = decoder("telegraf", MULTI, key_fields=["host"]).decode(TELEGRAF)
    assert p.key == "host=web-1"


def test_telegraf_batch_univariate_one_series_per_field():
    raw = b'{"metrics": [' + TELEGRAF + b"," + TELEGRAF.replace(b"web-1", b"web-2") + b"]}"
    pts = decoder("telegraf").decode(raw)
    assert len(pts) == 6 and pts[0].key == "cpu,cpu=cpu0,host=web-1/usage_user"
    assert pts[5].key == "cpu,cpu=cpu0,host=web-2/usage_idle" and pts[5].values == [98.0]


INFLUX = (b"cpu,host=web-1,cpu=cpu0 usage_user=1.5,usage_system=0.5,usage_idle=98i "
          b"1767225600000000000\n"
          b"# a comment\n"
          b'cpu,host=web\\ 2,cpu=cpu0 usage_user=2.5,usage_system=1,usage_idle=96u,'
          b'note="a, b=c" 1767225610000000000\n')


def test_influx_many_lines_escapes_and_types():
    pts = decoder("influx", MULTI).decode(INFLUX)
    assert [p.key for p in pts] == ["cpu,cpu=cpu0,host=web-1", "cpu,cpu=cpu0,host=web 2"]
    assert pts[0].values == [1.5, 0.5, 98.0] and pts[1].ts == 1767225610.0


def test_influx_missing_timestamp_takes_record_time_and_bad_line_names_line():
    [p] = decoder("influx").decode(b"temp,room=a value=21.5", record_ts=1767225600.5)
    assert p.ts == 1767225600.5 and p.key == "temp,room=a/value"
    with pytest.raises(BadMessage, match="line 2"):
        decoder("influx").decode(b"temp,room=a value=1 1767225600000000000\ntemp,room=a value=x")


PROM = (b'{"timestamp": "2026-01-01T00:00:00Z", "value": "0.25", "name": "node_load1", '
        b'"labels": {"__name__": "node_load1", "instance": "web-1:9100", "job": "node"}}')


def test_prometheus_adapter_sample_and_samples_list():
    [p] = decoder("prometheus").decode(PROM)
    assert p.key == "node_load1,instance=web-1:9100,job=node/node_load1" and p.values == [0.25]
    raw = (b'{"labels": {"__name__": "up", "job": "api"}, "samples": '
           b'[{"timestamp": 1767225600000, "value": "NaN"}, {"timestamp": 1767225615000, '
           b'"value": 1}]}')
    pts = decoder("prometheus", key_fields=["job"]).decode(raw)
    assert math.isnan(pts[0].values[0]) and pts[1].values == [1.0] and pts[1].key == "job=api/up"


def test_prometheus_multichannel_maps_metric_names_to_channels():
    [p] = decoder("prometheus", ["node_load1", "node_load5"], key_fields=["instance"]).decode(PROM)
    assert p.key == "instance=web-1:9100" and p.values[0] == 0.25 and math.isnan(p.values[1])


def alert(name, start, fp, status="firing"):
    return (f'{{"status": "{status}", "labels": {{"alertname": "{name}", "instance": "h"}}, '
            f'"startsAt": "{start}", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "{fp}"}}')


def webhook(*alerts):
    return (b'{"version": "4", "status": "firing", "receiver": "ops", "groupKey": "{}", '
            b'"alerts": [' + ",".join(alerts).encode() + b"]}")


def test_alertmanager_rates_per_interval_with_zeros_and_repeat_dedup():
    d = decoder("alertmanager", alert_interval=60.0)
    assert d.decode(webhook(alert("Disk", "2026-01-01T00:00:05Z", "a"),
                            alert("Disk", "2026-01-01T00:00:30Z", "b"))) == []
    # a repeat notification of "a" must not count twice
    assert d.decode(webhook(alert("Disk", "2026-01-01T00:00:05Z", "a"),
                            alert("CPU", "2026-01-01T00:01:10Z", "c"))) == []
    pts = d.decode(webhook(alert("CPU", "2026-01-01T00:04:00Z", "d")))
    t0 = 1767225600.0
    assert [(p.ts - t0, p.key, p.values[0]) for p in pts] == [
        (60, "Disk", 2.0), (60, "CPU", 0.0), (120, "Disk", 0.0), (120, "CPU", 1.0),
        (180, "Disk", 0.0), (180, "CPU", 0.0)]
    with pytest.raises(BadMessage, match="late"):  # dead-lettered, not silently dropped
        d.decode(webhook(alert("Disk", "2026-01-01T00:00:50Z", "late")))
    assert d.late == 1
    clone = decoder("alertmanager", alert_interval=60.0)
    clone.restore(d.state())
    assert clone.state() == d.state()


def test_an_alert_from_a_clock_ahead_is_dead_lettered_without_moving_the_series():
    from streamae.formats.alerts import AlertRateDecoder

    now = 1767225600.0
    d = AlertRateDecoder(InputConfig(format="alertmanager", alert_interval=60.0), UNI,
                         "series", clock=lambda: now)
    d.decode(webhook(alert("Disk", "2026-01-01T00:00:05Z", "a")))
    before = d.state()
    with pytest.raises(BadMessage, match="max_future") as err:  # two hours ahead
        d.decode(webhook(alert("Disk", "2026-01-01T00:00:10Z", "b"),
                         alert("Disk", "2026-01-01T02:00:00Z", "c")))
    assert err.value.kind == "future" and d.state() == before
    with pytest.raises(BadMessage):  # a malformed alert after a good one counts neither
        d.decode(webhook(alert("Disk", "2026-01-01T00:00:20Z", "e"), '{"labels": {}}'))
    assert d.state() == before
    pts = d.decode(webhook(alert("Disk", "2026-01-01T00:02:00Z", "f")))
    assert [p.values[0] for p in pts] == [1.0]  # later alerts still count


def test_alertmanager_resolved_alerts_do_not_count():
    d = decoder("alertmanager", alert_interval=60.0)
    d.decode(webhook(alert("Disk", "2026-01-01T00:00:05Z", "a", "resolved"),
                     alert("Disk", "2026-01-01T00:00:06Z", "b")))
    pts = d.decode(webhook(alert("Disk", "2026-01-01T00:03:00Z", "z")))
    assert [p.values[0] for p in pts] == [1.0, 0.0]


def test_json_batch_fast_path_equals_message_by_message():
    from streamae.io.kafka_records import BatchDecoder

    class Rec:
        def __init__(self, i, value):
            self.topic, self.partition, self.offset, self.timestamp = "t", 0, i, 1000
            self.value = value

    good = [b'{"timestamp": %d, "key": "k%d", "value": %s}' % (1767225600 + i, i % 3,
                                                              b"1.5" if i % 2 else b"2")
            for i in range(20)]
    multi = [b'{"timestamp": %d, "key": "h", "values": {"usage_user": 1, "usage_system": 2, '
             b'"usage_idle": %d}}' % (1767225600 + i, i) for i in range(5)]
    for channels, raws in ((UNI, good), (MULTI, multi)):
        batch = BatchDecoder(decoder("json", channels), channels, 1 << 20)
        fast = batch.decode([Rec(i, r) for i, r in enumerate(raws)])
        assert batch.decoder.decode_batch(raws) is not None
        slow = batch.decode([Rec(i, r) for i, r in enumerate(raws)] + [Rec(99, b"bad")])
        assert len(slow.dead) == 1
        np.testing.assert_array_equal(fast.frame.values, slow.frame.values)
        np.testing.assert_array_equal(fast.frame.timestamps, slow.frame.timestamps)
        assert list(fast.frame.keys) == list(slow.frame.keys)
        np.testing.assert_array_equal(fast.message, slow.message)
    for odd in (b'{"timestamp": 1767225600, "key": "k", "value": true}',
                b'{"timestamp": "2026-01-01T00:00:00Z", "key": "k", "value": 1}',
                b'{"timestamp": 1767225600, "key": 5, "value": 1}',
                b'{"timestamp": 1767225600, "key": "k", "value": NaN}',
                b'[{"timestamp": 1767225600, "key": "k", "value": 1}]',
                b'{"timestamp": 1767225600, "key": "k", "values": {"elsewhere": 1}}'):
        assert decoder("json").decode_batch(good + [odd]) is None


def test_a_key_with_a_control_character_is_dead_lettered_on_both_paths():
    from streamae.io.kafka_records import BatchDecoder

    class Rec:
        def __init__(self, i, value):
            self.topic, self.partition, self.offset, self.timestamp = "t", 0, i, 1000
            self.value = value

    good = b'{"timestamp": 1767225600, "key": "s1", "value": 1}'
    nul = b'{"timestamp": 1767225601, "key": "s1\\u0000", "value": 1}'
    influx = b"cpu,host=a\x07b usage=1 1767225600000000000"
    for fmt, raws in (("json", [good, nul]), ("influx", [influx])):
        batch = BatchDecoder(decoder(fmt), UNI, 1 << 20).decode(
            [Rec(i, r) for i, r in enumerate(raws)])
        assert [d.kind for d in batch.dead] == ["bad_key"], fmt
        assert all("\x00" not in k and "\x07" not in k for k in batch.frame.keys)


def test_a_bad_message_costs_only_itself():
    """Each of these once became points (or crashed the daemon at the key's first event)."""
    d = decoder("json")
    cases = {
        b'{"timestamp": 1767225600, "key": "sensor-2\xed\xa0\x80", "value": 1}': "parse",
        b'{"timestamp": 1767225600, "key": "sensor-2\\ud800", "value": 1}': "parse",
        b'{"timestamp": 1767225600, "key": "k", "value": 1e400}': "out_of_range",
        b'{"timestamp": 1767225600, "key": "k", "value": "inf"}': "invalid",
        b'[]': "empty",
        b'{"timestamp": 1767225600, "key": true, "value": 1}': "invalid",
    }
    for raw, kind in cases.items():
        with pytest.raises(BadMessage) as err:
            d.decode(raw)
        assert err.value.kind == kind, raw
    [p] = d.decode(b'{"timestamp": 1767225600, "key": "k", "value": NaN}')  # missing value
    assert math.isnan(p.values[0])
    with pytest.raises(BadMessage, match="exceeds"):
        decoder("json", ["a", "b"]).decode(
            b'{"timestamp": 1767225600, "key": "k", "values": {"a": -Infinity, "b": 1}}')


def test_points_far_ahead_of_the_wall_clock_are_dead_letters():
    from streamae.io.kafka_records import BatchDecoder

    class Rec:
        def __init__(self, i, value):
            self.topic, self.partition, self.offset, self.timestamp = "t", 0, i, 1000
            self.value = value

    now = 1767225600.0
    raws = [b'{"timestamp": %d, "key": "k", "value": 1}' % (now + dt)
            for dt in (-10, 0, 60, 7200, 5)]
    batch = BatchDecoder(decoder("json"), UNI, 1 << 20, max_future=3600, clock=lambda: now)
    out = batch.decode([Rec(i, r) for i, r in enumerate(raws)])
    assert list(out.frame.timestamps - now) == [-10, 0, 60, 5]
    [dead] = out.dead
    assert dead.kind == "future" and dead.offset == 3 and "input.max_future" in dead.reason
    unbounded = BatchDecoder(decoder("json"), UNI, 1 << 20, max_future=None, clock=lambda: now)
    assert len(unbounded.decode([Rec(i, r) for i, r in enumerate(raws)]).frame) == 5


def test_event_ids_never_fail_on_odd_keys():
    from streamae.events import _digest

    assert len(_digest("sensor-2\ud800", 1.0)) == 20


def test_a_message_whose_points_are_rejected_is_one_dead_letter_naming_them():
    from types import SimpleNamespace

    from streamae.io.kafka_records import DecodedBatch
    from streamae.types import Frame
    from streamae.windows import STATUS_NAMES

    n = 6
    frame = Frame(np.arange(n, dtype=np.float64), np.array(["k"] * n, dtype=object),
                  np.zeros((n, 1), np.float32), ["v"])
    records = [SimpleNamespace(value=b"batch-%d" % i, topic="t", partition=0, offset=i,
                               timestamp=0) for i in range(2)]
    batch = DecodedBatch(frame, np.array([0, 0, 0, 0, 0, 1]), records)
    dup, late = STATUS_NAMES.index("duplicate"), STATUS_NAMES.index("late")
    status = np.array([dup, dup, dup, dup, dup, late])
    dead = batch.rejected(100, np.arange(100, 100 + n), status)
    assert [(d.raw, d.kind) for d in dead] == [(b"batch-0", "duplicate"), (b"batch-1", "late")]
    assert dead[0].reason.startswith("5 points rejected: duplicate: key 'k' at 0.000")
    assert dead[0].reason.endswith("and 2 more") and "points rejected" not in dead[1].reason
