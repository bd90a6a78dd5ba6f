"""The daemon against a real Kafka broker: same events as the file backtest, no loss across
kill -9 and broker restarts, exactly-once with transactions, bad input to the dead-letter
topic."""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest

from conftest import QUICK_ROUNDS, SMALL
from daemon_helpers import (by_key, daemon_config, events_of, metric, same_events, scraped,
                            start_process, wait_committed, wait_for, wait_ready)
from streamae.backtest import run_backtest
from streamae.broker import free_port
from streamae.config import load_config, with_overrides
from streamae.daemon.runner import Daemon
from streamae.demo import frame_messages
from streamae.models.detector import Detector, train_detector

pytestmark = pytest.mark.kafka
SCHEMA = json.loads((Path(__file__).parents[1] / "streamae/schemas/event-v1.json").read_text())


# the small model with a readier threshold, every alarm kept (none pruned beside a
# stronger one): events to compare
SETTINGS = {**SMALL, "scoring.threads": 1, "alarm.prune": 0.0, "threshold.risk": 1e-3}


@pytest.fixture(scope="module")
def model(train_frame, tmp_path_factory):
    config = load_config(overrides=SETTINGS)
    detector = train_detector(train_frame, config)
    path = tmp_path_factory.mktemp("model")
    detector.save(path)
    return Detector.load(path), path, config


@pytest.fixture(scope="module")
def live(synthetic):
    frame = synthetic.take(synthetic.timestamps >= np.median(synthetic.timestamps))
    return frame.take(frame.event_time_order())


@pytest.fixture(scope="module")
def expected(model, live):
    detector, _, config = model
    events = run_backtest(live, detector, config, flush=False).events
    assert len(events) >= 4, "the scenario must produce events to compare"
    return events


class InProcess:
    """The daemon on a thread of the test process."""

    def __init__(self, config, detector, kind=Daemon):
        self.daemon = kind(config, detector)
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()

    def wait_consumed(self, total, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.thread.is_alive(), "the daemon died"
            if sum(self.daemon.positions.values()) >= total and not self.daemon.dirty:
                return
            time.sleep(0.1)
        raise AssertionError(f"daemon read {sum(self.daemon.positions.values())} of {total}")

    def stop(self):
        self.daemon.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


def first_half(kafka, cfg, detector, live):
    """Stream the first half of ``live`` through a new in-process daemon; returns the
    messages, their half-way index and the running daemon."""
    messages = frame_messages(live)
    half = len(messages) // 2
    kafka.produce(cfg.input.topics[0], messages[:half])
    run = InProcess(cfg, detector)
    run.wait_consumed(half)
    return messages, half, run


def test_end_to_end_events_match_the_file_backtest(kafka, model, live, expected, tmp_path):
    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path)
    kafka.produce(cfg.input.topics[0], frame_messages(live))
    run = InProcess(cfg, detector)
    run.wait_consumed(len(live))
    run.stop()
    got = events_of(kafka, cfg.daemon.output_topic)
    for event in got:
        jsonschema.validate(event, SCHEMA)
        assert event["source"]["topic"] == cfg.input.topics[0]
        assert event["source"]["offset_last"] < len(live)
    same_events(got, expected)
    assert kafka.consume(cfg.daemon.dead_letter_topic) == []
    assert kafka.committed(cfg.daemon.group_id, cfg.input.topics[0]) == len(live)


def test_partitions_given_up_in_a_rebalance_are_left_alone(kafka, model, live, tmp_path):
    """A second member takes a partition: the daemon carries on with the other and never
    commits, nor watches the lag of, the one it gave up; when the member leaves, the daemon
    takes the partition back at the group's committed offset."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor

    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path)
    topic = kafka.topic("in2", partitions=2)
    cfg = dataclasses.replace(cfg, input=dataclasses.replace(cfg.input, topics=[topic]))
    messages = frame_messages(live)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    for key, value in messages:  # one sensor per partition, so both hold records
        producer.send(topic, key=key, value=value, partition=int(key == b"sensor-1"))
    producer.flush()
    producer.close()
    run = InProcess(cfg, detector)
    run.wait_consumed(len(messages))
    other = KafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers,
                          group_id=cfg.daemon.group_id, enable_auto_commit=False,
                          partition_assignment_strategy=(CooperativeStickyAssignor,))
    try:
        deadline = time.monotonic() + 60
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(timeout_ms=200)
        (taken,) = other.assignment()
        before = kafka.committed(cfg.daemon.group_id, topic, taken.partition)
        assert before > 0
        while (topic, taken.partition) in run.daemon.positions:
            assert time.monotonic() < deadline, "the daemon kept the partition it gave up"
            other.poll(timeout_ms=200)  # stay in the group
            time.sleep(0.1)
        for _ in range(35):  # past a lag update (every 5 s) and several commits
            other.poll(timeout_ms=200)
        assert run.thread.is_alive(), "the daemon died after the rebalance"
        assert set(run.daemon.positions) == {(topic, 1 - taken.partition)}
        assert kafka.committed(cfg.daemon.group_id, topic, taken.partition) == before
        # more input on the daemon's own partition: it checkpoints without the given-up one
        mine = (topic, 1 - taken.partition)
        end = run.daemon.positions[mine] + 10
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
        last = float(live.timestamps.max())
        for i in range(1, 11):
            doc = {"timestamp": last + 600 * i, "key": f"sensor-{mine[1]}",
                   "values": {c: 0.0 for c in live.channels}}
            producer.send(topic, value=orjson.dumps(doc), partition=mine[1])
        producer.flush()
        producer.close()
        while run.daemon.positions[mine] < end or run.daemon.dirty:
            assert time.monotonic() < deadline + 30, "the daemon did not read its partition"
            other.poll(timeout_ms=100)
        # the other member leaves: the daemon takes the partition back at the group's
        # committed offset, not from the start of the topic
        consumed = metric(run.daemon, "streamae_messages_consumed_total", topic=topic)
        other.close()
        other = None
        while (topic, taken.partition) not in run.daemon.positions:
            assert time.monotonic() < deadline + 60, "the daemon never took it back"
            time.sleep(0.1)
        time.sleep(2)
        assert run.daemon.positions[(topic, taken.partition)] == before
        assert metric(run.daemon, "streamae_messages_consumed_total", topic=topic) == consumed
    finally:
        if other is not None:
            other.close()
        run.stop()


def test_restart_resumes_state_without_rewarming(kafka, model, live, expected, tmp_path):
    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path)
    messages, half, first = first_half(kafka, cfg, detector, live)
    keys_before = list(first.daemon.pipeline.keys.names)
    first.stop()
    kafka.produce(cfg.input.topics[0], messages[half:])
    second = InProcess(cfg, detector)
    second.wait_consumed(len(messages))
    assert second.daemon.pipeline.keys.names == keys_before
    counts = second.daemon.pipeline.counts()
    second.stop()
    same_events(events_of(kafka, cfg.daemon.output_topic), expected)
    assert sum(counts.values()) == len(live)  # restored counters cover both runs


# ---------------------------------------------------------------- kill -9, subprocesses
def crash_and_resume(kafka, model, live, tmp_path, delivery, kills=3, seed=0):
    """Stream in chunks, each paced over about a second while the daemon runs, and kill -9
    the daemon at a random moment of each; finish with a clean SIGTERM. Returns the config
    and the daemons' log."""
    _, model_path, config = model
    cfg = daemon_config(config, kafka, tmp_path, delivery)
    messages = frame_messages(live)
    chunks = np.array_split(np.arange(len(messages)), kills + 1)
    rng = random.Random(seed)
    port = free_port()

    def paced(chunk):
        for part in np.array_split(chunk, 10):
            kafka.produce(cfg.input.topics[0], [messages[j] for j in part])
            time.sleep(0.1)

    for i, chunk in enumerate(chunks):
        proc = start_process(cfg, model_path, tmp_path, port)
        wait_ready(proc, port)
        producer = threading.Thread(target=paced, args=(chunk,))
        producer.start()
        if i < kills:
            time.sleep(rng.uniform(0.2, 1.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        producer.join()
    wait_committed(kafka, cfg, len(messages), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, "clean shutdown"
    return cfg, (tmp_path / "daemon.log").read_text()


def test_kill9_at_least_once_loses_nothing(kafka, model, live, expected, tmp_path):
    cfg, log = crash_and_resume(kafka, model, live, tmp_path, "at-least-once", seed=1)
    got = events_of(kafka, cfg.daemon.output_topic)
    unique = list({e["event_id"]: e for e in got}.values())
    duplicates = len(got) - len(unique)
    print(f"at-least-once: {len(got)} events received, {len(unique)} unique, "
          f"{duplicates} repeated after kill -9")
    want = by_key(expected)
    for key, events in by_key(sorted(unique, key=lambda e: e["at"])).items():
        same_events(events, want[key])
    assert {e["event_id"] for e in unique} == {e["event_id"] for e in expected}
    assert "resumed from checkpoint" in log


def test_kill9_exactly_once_with_read_committed(kafka, model, live, expected, tmp_path):
    cfg, log = crash_and_resume(kafka, model, live, tmp_path, "exactly-once", seed=2)
    got = events_of(kafka, cfg.daemon.output_topic, read_committed=True)
    assert len(got) == len(expected), Counter(e["event_id"] for e in got).most_common(3)
    want = by_key(expected)
    for key, events in by_key(got).items():
        same_events(events, want[key])
    assert "resumed from checkpoint" in log


def received(kafka, cfg, delivery):
    """The output topic as a consumer of that delivery mode sees it: exactly-once in
    ``read_committed`` with nothing repeated, at-least-once with repeats folded by id."""
    if delivery == "exactly-once":
        got = events_of(kafka, cfg.daemon.output_topic, read_committed=True)
        assert len({e["event_id"] for e in got}) == len(got), "duplicates under exactly-once"
        return got
    return list({e["event_id"]: e for e in events_of(kafka, cfg.daemon.output_topic)}.values())


def assert_backtest_events(got, expected):
    assert {e["event_id"] for e in got} == {e["event_id"] for e in expected}
    want = by_key(expected)
    for key, events in by_key(sorted(got, key=lambda e: e["at"])).items():
        same_events(events, want[key])


@pytest.mark.parametrize("delivery,fault", [("at-least-once", "stop"),
                                            ("exactly-once", "stop"), ("exactly-once", "kill")])
def test_broker_restart_mid_stream(kafka, model, live, expected, tmp_path, delivery, fault):
    """The broker stops (or is killed with kill -9) for 10 s while the daemon is busy, then
    comes back: the daemon carries on unattended and the output holds exactly the
    backtest's events."""
    if kafka.broker is None:
        pytest.skip("an external cluster cannot be restarted by the suite")
    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path, delivery, commit_timeout=5.0)
    messages = frame_messages(live)
    quarter = len(messages) // 4
    kafka.produce(cfg.input.topics[0], messages[:quarter])
    run = InProcess(cfg, detector)
    run.wait_consumed(quarter)
    kafka.produce(cfg.input.topics[0], messages[quarter:])
    # mid-stream: batches and commits in flight
    wait_for(lambda: sum(run.daemon.positions.values()) > quarter, what="the rest being read")
    try:
        kafka.broker.stop() if fault == "stop" else kafka.broker.kill()
        time.sleep(10)
    finally:
        kafka.broker.start()
    run.wait_consumed(len(messages), timeout=240)
    run.stop()
    assert_backtest_events(received(kafka, cfg, delivery), expected)


def test_a_stop_during_a_broker_outage_is_prompt(kafka, model, live, tmp_path):
    """SIGTERM while the brokers are away: the daemon gives up its commit within
    ``daemon.commit_timeout`` and exits, instead of waiting for them for good."""
    if kafka.broker is None:
        pytest.skip("an external cluster cannot be restarted by the suite")
    _, model_path, config = model
    cfg = daemon_config(config, kafka, tmp_path, "exactly-once", commit_timeout=4.0)
    messages = frame_messages(live)
    kafka.produce(cfg.input.topics[0], messages[: len(messages) // 2])
    port = free_port()
    proc = start_process(cfg, model_path, tmp_path, port)
    try:
        wait_ready(proc, port)
        kafka.produce(cfg.input.topics[0], messages[len(messages) // 2:])
        wait_for(lambda: scraped(port, "streamae_messages_consumed_total")
                 > len(messages) // 2, what="the second half being read")
        kafka.broker.stop()
        time.sleep(2)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(cfg.daemon.commit_timeout * 2 + 10)
        assert time.monotonic() - stopped < cfg.daemon.commit_timeout * 2 + 10
    finally:
        if proc.poll() is None:
            proc.kill()
        kafka.broker.start()


class FailsOnce:
    """A producer whose ``nth`` event send raises, as a sink with a bug or a timeout would."""

    def __init__(self, producer, topic, nth):
        self.producer, self.topic, self.left = producer, topic, nth

    def send(self, topic, *args, **kwargs):
        if topic == self.topic:
            self.left -= 1
            if self.left == 0:
                raise RuntimeError("injected: the sink failed")
        return self.producer.send(topic, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.producer, name)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_an_error_inside_a_batch_commits_nothing(kafka, model, live, expected, tmp_path,
                                                 monkeypatch, delivery):
    """An exception after a batch is scored but before its events are out stops the
    daemon without a commit; the next start replays the batch and nothing is lost."""
    from streamae.daemon import runner

    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path, delivery)
    kafka.produce(cfg.input.topics[0], frame_messages(live))
    real = runner.clients.producer
    monkeypatch.setattr(runner.clients, "producer", lambda *a, **k: FailsOnce(
        real(*a, **k), cfg.daemon.output_topic, nth=len(expected) // 2))
    failing = InProcess(cfg, detector)
    failing.thread.join(120)
    assert not failing.thread.is_alive(), "the injected error must stop the daemon"
    monkeypatch.setattr(runner.clients, "producer", real)
    run = InProcess(cfg, detector)
    run.wait_consumed(len(live))
    run.stop()
    assert_backtest_events(received(kafka, cfg, delivery), expected)


def test_lag_gauges_tell_the_truth_while_the_loop_is_stuck(kafka, model, live, tmp_path,
                                                          monkeypatch):
    """Both lag gauges are there from the start and read from the brokers, not from the
    loop: while the loop is stuck they show everything unread and uncommitted."""
    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path)
    messages = frame_messages(live)
    kafka.produce(cfg.input.topics[0], messages)
    release = threading.Event()
    handle = Daemon._handle

    def stuck(self, polled):
        release.wait(60)
        return handle(self, polled)

    monkeypatch.setattr(Daemon, "_handle", stuck)
    monkeypatch.setattr(Daemon, "lag_every", 0.3)
    run = InProcess(cfg, detector)
    labels = {"topic": cfg.input.topics[0], "partition": "0"}

    def lags():
        return (metric(run.daemon, "streamae_committed_lag", **labels),
                metric(run.daemon, "streamae_consumer_lag", **labels))

    try:  # stuck on its first batch: everything is behind, read or not
        wait_for(lambda: lags() == (len(messages), len(messages)), what="the lag gauges")
    finally:
        release.set()
    run.wait_consumed(len(messages))
    wait_for(lambda: lags() == (0, 0), what="the lag gauges back at 0")
    run.stop()


# ---------------------------------------------------------------- bad input
def fuzzed(live, rng):
    """The good stream with malformed messages mixed in; returns (messages, bad values)."""
    good = frame_messages(live)
    t0 = float(live.timestamps[0])
    first = orjson.loads(good[0][1])
    bad = [
        b'{"timestamp": 1767225600, "key": "sensor-0", "values": {"ch0": 1',
        b"\xff\xfe not even text",
        b"[1, 2, 3]",
        orjson.dumps({"timestamp": t0, "key": "sensor-0", "values": {"ch0": "high"}}),
        orjson.dumps({"timestamp": t0, "key": "sensor-0", "values": {"ch0": 1e300}}),
        orjson.dumps({"timestamp": t0, "key": "sensor-0", "values": {"ch0": True}}),
        orjson.dumps({"key": "sensor-0", "values": {"ch0": 1.0}}),
        orjson.dumps({"timestamp": t0, "values": {"ch0": 1.0}}),
        orjson.dumps({"timestamp": t0, "key": "sensor-0"}),
        orjson.dumps({"timestamp": "not a time", "key": "sensor-0", "values": {"ch0": 1}}),
        orjson.dumps({"timestamp": t0, "key": "sensor-0", "values": {"nope": 1.0}}),
        b'{"timestamp": 1767225600, "key": "x", "values": {"ch0": 1}, "pad": "'
        + b"x" * 300_000 + b'"}',
        b"",
        # each of these once took good points or the daemon down with it
        b'{"timestamp": %d, "key": "sensor-2\xed\xa0\x80", "values": {"ch0": 1}}' % t0,
        b'{"timestamp": %d, "key": "sensor-2\\ud800", "values": {"ch0": 1}}' % t0,
        orjson.dumps({"timestamp": 7_200_000_000, "key": "sensor-0", "values": {"ch0": 1}}),
        b'{"timestamp": %d, "key": "sensor-0", "values": {"ch0": 1e400}}' % t0,
        b"[]",
        orjson.dumps({"timestamp": t0, "key": True, "values": {"ch0": 1.0}}),
    ]
    messages = list(good)
    for raw in bad:
        messages.insert(rng.randrange(1, len(messages)), (b"junk", raw))
    # a duplicate and a late point, each after its original, on a key of their own
    probe = [orjson.dumps({"timestamp": t0 + i, "key": "probe", "values": first["values"]})
             for i in (10, 11, 11, 5)]
    at = len(messages) // 2
    messages[at:at] = [(b"probe", raw) for raw in probe]
    nan = orjson.dumps({"timestamp": t0 + 20, "key": "probe", "values": {
        k: None for k in first["values"]}})
    messages.insert(at + 4, (b"probe", nan))
    return messages, bad + [probe[2], probe[3]], len(good) + 3


def test_fuzzed_bad_input_goes_to_dead_letters(kafka, model, live, expected, tmp_path):
    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path)
    messages, bad, good_points = fuzzed(live, random.Random(3))
    kafka.produce(cfg.input.topics[0], messages)
    run = InProcess(cfg, detector)
    run.wait_consumed(len(messages))
    counts = run.daemon.pipeline.counts()
    run.stop()
    dead = kafka.consume(cfg.daemon.dead_letter_topic)
    assert sorted(r.value for r in dead) == sorted(bad)
    for record in dead:
        headers = dict(record.headers)
        assert headers["streamae.reason"] and headers["streamae.kind"]
        assert int(headers["streamae.offset"]) < len(messages)
    kinds = Counter(dict(r.headers)["streamae.kind"].decode() for r in dead)
    assert kinds["late"] == 1 and kinds["duplicate"] == 1 and kinds["oversized"] == 1
    assert kinds["out_of_range"] == 2 and kinds["parse"] >= 4
    assert kinds["future"] == 1 and kinds["empty"] == 1
    # every good point was accepted (nan ones filled forward), none silently lost
    accepted = counts["ok"] + counts["nan_filled"] + counts["gap"]
    assert accepted == good_points and counts["nan_filled"] >= 1
    real = [e for e in events_of(kafka, cfg.daemon.output_topic) if e["key"] != "probe"]
    same_events(real, expected)


# ---------------------------------------------------------------- replay of a topic range
def test_kafka_range_replay_equals_the_file_backtest(kafka, model, live, tmp_path):
    from kafka import KafkaProducer

    from streamae.cli import main

    detector, model_path, config = model
    topic = kafka.topic("history")
    t0, t1 = float(live.timestamps[0]), float(live.timestamps[-1])
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    outside = [(t0 - 3600, b'{"timestamp": %d, "key": "outside", "values": {}}' % (t0 - 3600))]
    for ts, (key, value) in zip(live.timestamps, frame_messages(live)):
        if ts == live.timestamps[len(live) // 2]:
            outside.append((t1 + 3600, b'{"timestamp": %d, "key": "outside", "values": {}}'
                            % (t1 + 3600)))
        producer.send(topic, key=key, value=value, timestamp_ms=int(ts * 1000))
    for ts, value in outside:  # records whose time is outside the replayed range
        producer.send(topic, key=b"outside", value=value, timestamp_ms=int(ts * 1000))
    producer.flush()
    producer.close()
    out = tmp_path / "replay"
    assert main(["backtest", "--kafka-topic", topic, "--from", str(t0), "--to", str(t1 + 1),
                 "--bootstrap-servers", kafka.bootstrap_servers, "--model", str(model_path),
                 "--out", str(out), "-q"] + [a for k, v in SETTINGS.items()
                                             for a in ("--set", f"{k}={v}")]) == 0
    replayed = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    expected = run_backtest(live, detector, config).events
    assert replayed == expected  # event-time clock: every field equal, emitted_at included
    scores = (out / "scores.csv").read_text().splitlines()
    assert len(scores) == len(live) + 1 and "outside" not in "".join(scores)


# ---------------------------------------------------------------- online updates
def test_control_commands_after_the_last_checkpoint_are_obeyed_again_on_resume(
        kafka, model, tmp_path):
    """A daemon killed after obeying a control command, before its next checkpoint, lost
    the command's effect with the rest of its state. Resuming from that checkpoint it
    reads the control topic from the checkpoint's position and obeys the command again;
    a daemon starting with no checkpoint obeys only commands sent from then on, and again
    if it has to start afresh."""
    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path)
    cfg = dataclasses.replace(
        cfg, daemon=dataclasses.replace(cfg.daemon, control_topic=kafka.topic("control")),
        updater=dataclasses.replace(cfg.updater, enabled=True))

    def obeyed(daemon: Daemon, seconds: float = 10.0) -> set[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not daemon.updates.updater._held:
            daemon.updates.step(daemon.pipeline, time.time())
            time.sleep(0.1)
        return set(daemon.updates.updater._held)

    daemons = [Daemon(cfg, detector) for _ in range(3)]
    try:
        first, resumed, fresh = daemons
        first.updates.open_control()
        checkpoint = first.updates.state_arrays()  # the last checkpoint before the kill
        kafka.produce(cfg.daemon.control_topic,
                      [(None, b'{"command": "reject", "key": "sensor-1"}')])
        assert obeyed(first) == {"sensor-1"}
        resumed.updates.open_control()  # killed: another daemon resumes from checkpoint
        resumed.updates.restore(checkpoint)
        assert obeyed(resumed) == {"sensor-1"}
        fresh.updates.open_control()
        fresh.updates.restore({})
        assert obeyed(fresh, seconds=2.0) == set()
        kafka.produce(cfg.daemon.control_topic,
                      [(None, b'{"command": "reject", "key": "sensor-2"}')])
        assert obeyed(fresh) == {"sensor-2"}
        assert fresh.updates.state_arrays()["control.next"].tolist() == [2]
        fresh.updates.restore({})  # a failed delivery before any checkpoint: from scratch
        assert obeyed(fresh) == {"sensor-2"}
    finally:
        for daemon in daemons:
            daemon.updates.close()


def test_daemon_online_updates_obey_control_swap_and_survive_restart(kafka, model, live,
                                                                     tmp_path):
    from kafka import KafkaProducer

    from streamae.updater.store import ModelStore

    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path)
    control = kafka.topic("control")
    cfg = dataclasses.replace(
        cfg, daemon=dataclasses.replace(cfg.daemon, control_topic=control),
        # the gate passes all (its incident check judges however many alarm windows the
        # round's snapshot happens to hold): this is about control, swap and restart
        updater=with_overrides(cfg, {**QUICK_ROUNDS, "updater.enabled": True,
                                     "updater.store": str(tmp_path / "store"),
                                     "updater.gate.incident_keep": 0.0}).updater)
    messages, half, run = first_half(kafka, cfg, detector, live)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    producer.send(control, b'{"command": "update"}').get(10)
    producer.close()
    store = ModelStore(tmp_path / "store")
    deadline = time.monotonic() + 120
    sent = half
    while store.current() == detector.version and time.monotonic() < deadline:
        if sent < len(messages):  # keep batches flowing: the updater acts between them
            kafka.produce(cfg.input.topics[0], messages[sent: sent + 50])
            sent += 50
        time.sleep(0.3)
    kafka.produce(cfg.input.topics[0], messages[sent:])
    run.wait_consumed(len(messages))
    rounds = run.daemon.updates.updater.rounds
    buffered = len(run.daemon.updates.updater.buffer)
    run.stop()
    assert rounds and rounds[0].reason == "manual" and rounds[0].accepted
    assert store.current() != detector.version and store.current() == rounds[-1].candidate
    # a restart goes on with the accepted model and the checkpointed replay buffer
    again = InProcess(cfg, detector)
    again.wait_consumed(len(messages))
    assert again.daemon.pipeline.detector.version == store.current()
    assert len(again.daemon.updates.updater.buffer) == buffered
    again.stop()
