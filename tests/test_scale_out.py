"""Several daemon processes in one consumer group over a 6-partition topic: partitions move
(kill -9, scale up, scale down) and their keys' state moves with them through the state
topic, so the group's events equal one backtest over the whole stream: nothing lost, no key
warming up again, no open alarm firing again as new."""

from __future__ import annotations

import dataclasses
import re
import signal
import threading
import time
from collections import Counter

import numpy as np
import pytest
from kafka import KafkaProducer

from conftest import SMALL
from daemon_helpers import (by_key, daemon_config, events_of, same_events, scraped,
                            start_process, wait_for, wait_ready)
from streamae.backtest import run_backtest
from streamae.broker import free_port
from streamae.config import load_config
from streamae.demo import frame_messages
from streamae.models.detector import train_detector
from streamae.synth import generate

pytestmark = pytest.mark.kafka
PARTITIONS = 6


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Twelve sensors (two per partition), a model trained on their first half, and the
    events one backtest finds in their second half."""
    data = generate(n_points=1000, keys=12, channels=3, step_s=432.0, clean_head=500, seed=23,
                    anomaly_kinds=("spike", "level_shift", "variance_burst")).frame
    mid = np.median(data.timestamps)
    live = data.take(data.timestamps >= mid)
    live = live.take(live.event_time_order())
    config = load_config(overrides={**SMALL, "scoring.threads": 1})
    detector = train_detector(data.take(data.timestamps < mid), config)
    path = tmp_path_factory.mktemp("fleet-model")
    detector.save(path)
    expected = run_backtest(live, detector, config, flush=False).events
    assert len({e["key"] for e in expected}) >= 6, "alarms on many keys, so on moved ones"
    return path, config, live, expected


class Group:
    """Daemon processes sharing one config (each with its own state dir and port)."""

    def __init__(self, kafka, cfg, model_path, root):
        self.kafka, self.cfg, self.model_path, self.root = kafka, cfg, model_path, root
        self.procs: dict[str, tuple] = {}

    def start(self, name):
        where = self.root / name
        where.mkdir()
        cfg = dataclasses.replace(self.cfg, daemon=dataclasses.replace(
            self.cfg.daemon, state_dir=str(where / "state")))
        port = free_port()
        proc = start_process(cfg, self.model_path, where, port)
        self.procs[name] = (proc, port)
        wait_ready(proc, port)

    def kill(self, name):
        proc, _ = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self, name):
        proc, _ = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, f"{name}: clean shutdown"

    def log(self, name):
        return (self.root / name / "daemon.log").read_text()

    def wait_all_committed(self, ends, timeout=180.0):
        topic, group = self.cfg.input.topics[0], self.cfg.daemon.group_id
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, (proc, _) in self.procs.items():
                assert proc.poll() is None, f"{name} exited"
            done = {p: self.kafka.committed(group, topic, p) or 0 for p in range(PARTITIONS)}
            if all(done[p] >= ends[p] for p in range(PARTITIONS)):
                return
            time.sleep(0.5)
        raise AssertionError(f"committed {done}, end offsets {ends}")


def produce(kafka, topic, messages, seconds):
    """Write the messages over about ``seconds``; sensor-i goes to partition i % 6."""
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=5)
    parts = np.array_split(np.arange(len(messages)), 20)
    for part in parts:
        for j in part:
            key, value = messages[j]
            producer.send(topic, key=key, value=value,
                          partition=int(key.decode().rsplit("-", 1)[1]) % PARTITIONS)
        producer.flush()
        time.sleep(seconds / len(parts))
    producer.close()


def scenario(kafka, fleet, tmp_path, delivery):
    model_path, config, live, expected = fleet
    cfg = daemon_config(config, kafka, tmp_path, delivery, session_timeout=6.0)
    topic = kafka.topic("fleet", partitions=PARTITIONS)
    cfg = dataclasses.replace(cfg, input=dataclasses.replace(cfg.input, topics=[topic]))
    messages = frame_messages(live)
    ends = Counter(int(k.decode().rsplit("-", 1)[1]) % PARTITIONS for k, _ in messages)
    return Group(kafka, cfg, model_path, tmp_path), topic, messages, ends, expected


def received_with_state(log):
    """Partitions a daemon received after its start, and how many of them came without
    the state of their keys (after data had flowed: a real re-warm-up)."""
    with_state = re.findall(r"received \S+ with the state of (\d+) keys", log)
    cold = [m for m in re.findall(r"received \S+ without state: starts at offset ([^,\s]+)", log)
            if m not in ("(reset)", "0")]
    return len(with_state), cold


def check_events(got, expected):
    unique = list({e["event_id"]: e for e in got}.values())
    assert {e["event_id"] for e in unique} == {e["event_id"] for e in expected}
    want = by_key(expected)
    for key, events in by_key(sorted(unique, key=lambda e: e["at"])).items():
        same_events(events, want[key])
    return len(got) - len(unique)


def test_kill9_one_of_three_daemons_moves_its_partitions_with_their_state(kafka, fleet,
                                                                          tmp_path):
    group, topic, messages, ends, expected = scenario(kafka, fleet, tmp_path, "at-least-once")
    for name in ("a", "b", "c"):
        group.start(name)
    writer = threading.Thread(target=produce, args=(kafka, topic, messages, 6.0))
    writer.start()
    # b dies mid-stream, once every partition has a committed offset and b has committed
    # again after that (not at a fixed time): both of its partitions then move with state
    port, group_id = group.procs["b"][1], group.cfg.daemon.group_id
    wait_for(lambda: all((kafka.committed(group_id, topic, p) or 0) > 0
                         for p in range(PARTITIONS)), what="every partition committed")
    commits = scraped(port, "streamae_commits_total")
    wait_for(lambda: scraped(port, "streamae_commits_total") > commits,
             what="b committing a checkpoint of what it read")
    assert writer.is_alive(), "the kill should land mid-stream"
    group.kill("b")
    writer.join()
    group.wait_all_committed(ends)
    for name in ("a", "c"):
        group.stop(name)
    repeats = check_events(events_of(kafka, group.cfg.daemon.output_topic), expected)
    moved = [received_with_state(group.log(n)) for n in ("a", "c")]
    print(f"kill -9: {len(expected)} events, {repeats} repeated from b's last interval; "
          f"partitions received with state by a, c: {[m[0] for m in moved]}")
    assert sum(m[0] for m in moved) >= 2, "b's partitions went to a and c with their state"
    assert not any(m[1] for m in moved), "a partition moved without its state"


def test_scale_one_to_three_and_back_exactly_once(kafka, fleet, tmp_path):
    group, topic, messages, ends, expected = scenario(kafka, fleet, tmp_path, "exactly-once")
    third = len(messages) // 3
    group.start("a")
    produce(kafka, topic, messages[:third], 2.0)
    writer = threading.Thread(target=produce,
                              args=(kafka, topic, messages[third:2 * third], 6.0))
    writer.start()
    group.start("b")
    group.start("c")
    writer.join()
    writer = threading.Thread(target=produce, args=(kafka, topic, messages[2 * third:], 6.0))
    writer.start()
    time.sleep(1.0)
    group.stop("b")
    group.stop("c")
    writer.join()
    group.wait_all_committed(ends)
    logs = {n: group.log(n) for n in ("a", "b", "c")}
    group.stop("a")
    got = events_of(kafka, group.cfg.daemon.output_topic, read_committed=True)
    assert check_events(got, expected) == 0, "exactly-once: no event twice"
    moved = {n: received_with_state(log) for n, log in logs.items()}
    print(f"scale 1 -> 3 -> 1: {len(got)} events; partitions received with state: "
          f"{ {n: m[0] for n, m in moved.items()} }")
    assert moved["b"][0] + moved["c"][0] >= 2, "scale-up: partitions came with their state"
    assert moved["a"][0] >= 2, "scale-down: a took the partitions back with their state"
    assert not any(m[1] for m in moved.values()), "a partition moved without its state"
