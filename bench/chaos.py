"""Chaos on a real broker: what the daemon loses, repeats or wrongly rejects under faults.

    python bench/chaos.py [--kills 10] [--bad 10000] [--rss-minutes 20] [--seed 0]
                          [--only NAME[,NAME...]] [--keys 20] [--points 600]

One seeded synthetic stream (``--keys`` sensors with injected anomalies, one JSON message
per point, keyed by sensor over a 3-partition topic) and one model; the reference is the
file backtest of the same stream through the same pipeline code. Each scenario gets fresh
topics and its own consumer group, runs ``streamae run`` processes (the in-batch error
runs the daemon in this process, to inject it), and compares what reached the output topic
with the reference: expected / received / missing / extra (an ``event_id`` the backtest
does not have, or the same id with other content) / duplicated. Exactly-once scenarios
read the output as a ``read_committed`` consumer.

Scenarios (``--only`` names):
  kill9        ``--kills`` kill -9 restarts, each at a random moment 0.2-2.5 s after that
               start got its partitions, at-least-once and exactly-once
  broker       the broker stopped for 10 s mid-stream and started again, both modes; and
               the broker killed with kill -9 (exactly-once)
  malformed    ``--bad`` malformed messages of many kinds mixed into the stream: sent,
               dead-lettered (with a reason), missing, good messages wrongly dead-lettered
  error        an exception raised by the sink inside a batch, then a restart, both modes
  group        a 3-member group, one member killed with kill -9 mid-stream (not restarted)
  rss          one daemon under a steady stream for ``--rss-minutes``: resident memory at
               start, after warm-up (a tenth of the run, at least 1 minute), at the end

No scenario may need a manual step: a daemon that does not finish the stream on its own
fails the scenario (``stuck``). Exit status 1 when any scenario loses or wrongly rejects.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamae.backtest import run_backtest
from streamae.broker import DevBroker, free_port
from streamae.config import Config, config_to_dict, load_config
from streamae.daemon import clients
from streamae.demo import frame_messages
from streamae.models.detector import Detector, train_detector
from streamae.synth import generate
from streamae.types import Frame

PARTITIONS = 3


# ---------------------------------------------------------------- the stream and the truth
@dataclasses.dataclass
class World:
    broker: DevBroker
    config: Config
    model_dir: Path
    detector: Detector
    live: Frame
    messages: list[tuple[bytes, bytes]]
    expected: list[dict[str, Any]]
    work: Path
    n: int = 0

    def fresh(self, name: str, delivery: str, **daemon: Any) -> tuple[Config, Path]:
        """A config with topics, group and state of its own, and its YAML file."""
        self.n += 1
        tag = f"{name}-{self.n}"
        kafka = dataclasses.replace(self.config.kafka,
                                    bootstrap_servers=self.broker.bootstrap_servers)
        topic = f"chaos.{tag}.in"
        clients.ensure_topics(kafka, [topic], PARTITIONS)
        cfg = dataclasses.replace(
            self.config, kafka=kafka,
            input=dataclasses.replace(self.config.input, topics=[topic]),
            daemon=dataclasses.replace(
                self.config.daemon, group_id=f"chaos-{tag}", output_topic=f"chaos.{tag}.out",
                dead_letter_topic=f"chaos.{tag}.dlq", state_topic=f"chaos.{tag}.state",
                delivery=delivery, state_dir=str(self.work / tag / "state"), commit_every=0.5,
                poll_records=200, http_port=0, model=str(self.model_dir), **daemon))
        path = self.work / tag / "daemon.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(json.loads(json.dumps(config_to_dict(cfg)))))
        return cfg, path


def build_world(args: argparse.Namespace, work: Path) -> World:
    broker = DevBroker(port=free_port(), data_dir=work / "broker").start()
    config = load_config(overrides={"train.epochs": 4, "train.max_windows": 5000,
                                    "scoring.threads": 1})
    synth = generate(n_points=args.points * 2, keys=args.keys, channels=1,
                     clean_head=args.points, anomalies_per_key=2, seed=args.seed)
    frame = synth.frame
    cut = np.quantile(frame.timestamps, 0.5)
    train = frame.take(frame.timestamps < cut)
    live = frame.take(frame.timestamps >= cut)
    live = live.take(live.event_time_order())
    detector = train_detector(train, config)
    model_dir = work / "model"
    detector.save(model_dir)
    detector = Detector.load(model_dir)
    expected = run_backtest(live, detector, config, flush=False).events
    return World(broker, config, model_dir, detector, live, frame_messages(live), expected,
                 work)


# ---------------------------------------------------------------- processes and topics
class Daemons:
    """``streamae run`` processes on one config file."""

    def __init__(self, path: Path, work: Path) -> None:
        self.path, self.work, self.procs = path, work, []

    def start(self, instance: str = "a") -> subprocess.Popen:
        log = open(self.work / f"daemon-{instance}.log", "ab")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "streamae", "run", "--config",
                                 str(self.path), "--set", f"daemon.instance_id={instance}",
                                 "--state-dir", str(self.work / f"state-{instance}")],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def stop(self, timeout: float = 90.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def send_all(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]],
             pace: float = 0.0, chunks: int = 20) -> list[tuple[int, int]]:
    """Produce in order (idempotent, acks=all, so an outage repeats nothing); returns each
    message's (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=5, max_request_size=2 << 20)
    futures = []
    for part in np.array_split(np.arange(len(messages)), chunks):
        for j in part:
            key, value = messages[j]
            futures.append(producer.send(topic, key=key, value=value))
        if pace:
            time.sleep(pace / chunks)
    producer.flush()
    where = [(m.partition, m.offset) for m in (f.get(timeout=300) for f in futures)]
    producer.close()
    return where


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def wait_committed(bootstrap: str, cfg: Config, procs: Daemons | None,
                   timeout: float = 300.0) -> bool:
    """True once the group has committed to the end of every input partition (the stream
    is fully produced by then), False when it does not within ``timeout``."""
    topic = cfg.input.topics[0]
    want = end_offsets(bootstrap, topic)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=cfg.daemon.group_id,
                             enable_auto_commit=False)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            got = {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in want}
            if all(got[p] >= want[p] for p in want):
                return True
            if procs and procs.procs and all(p.poll() is not None for p in procs.procs):
                return False  # every daemon exited on its own
            time.sleep(0.5)
        return False
    finally:
        consumer.close()


def output(bootstrap: str, topic: str, read_committed: bool) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000,
                             isolation_level="read_committed" if read_committed
                             else "read_uncommitted")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in parts])
        return list(consumer)
    finally:
        consumer.close()


STABLE = ("alarm_id", "key", "status", "start", "end", "at", "severity", "model_version")


def compare(world: World, cfg: Config) -> dict[str, int]:
    eo = cfg.daemon.delivery == "exactly-once"
    got = [orjson.loads(r.value) for r in output(world.broker.bootstrap_servers,
                                                  cfg.daemon.output_topic, eo)]
    want = {e["event_id"]: e for e in world.expected}
    ids = [e["event_id"] for e in got]
    unique = {e["event_id"]: e for e in got}
    other = sum(1 for i, e in unique.items() if i in want
                and any(e[k] != want[i][k] for k in STABLE))
    return {"expected": len(want), "received": len(got),
            "missing": len(set(want) - set(ids)),
            "extra": len(set(ids) - set(want)) + other,
            "duplicated": len(ids) - len(unique)}


# ---------------------------------------------------------------- scenarios
def kill9(world: World, args: argparse.Namespace, delivery: str) -> dict[str, Any]:
    cfg, path = world.fresh("kill9", delivery)
    daemons = Daemons(path, path.parent)
    rng = random.Random(args.seed)
    bootstrap = world.broker.bootstrap_servers
    pace = 8.0 * (args.kills + 1)  # the stream lasts through every restart
    producer = threading.Thread(target=send_all, args=(bootstrap, cfg.input.topics[0],
                                                       world.messages, pace, 40))
    log = path.parent / "daemon-a.log"
    proc = daemons.start()
    producer.start()
    for i in range(args.kills):
        # once this start has its partitions, at a random moment of its work
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count("assigned ") <= i \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = daemons.start()
    producer.join()
    done = wait_committed(bootstrap, cfg, daemons)
    daemons.stop()
    return {**compare(world, cfg), "stuck": not done}


def broker_fault(world: World, args: argparse.Namespace, delivery: str,
                 how: str) -> dict[str, Any]:
    cfg, path = world.fresh(f"broker-{how}", delivery, commit_timeout=10.0)
    daemons = Daemons(path, path.parent)
    bootstrap = world.broker.bootstrap_servers
    third = len(world.messages) // 3
    send_all(bootstrap, cfg.input.topics[0], world.messages[:third])
    daemons.start()
    time.sleep(8.0)  # ready and busy
    producer = threading.Thread(target=send_all, args=(bootstrap, cfg.input.topics[0],
                                                       world.messages[third:], 20.0, 40))
    producer.start()
    time.sleep(2.0)
    if how == "stop":
        world.broker.stop()
    else:
        world.broker.kill()
    time.sleep(10.0)
    world.broker.start()
    producer.join()
    done = wait_committed(bootstrap, cfg, daemons, timeout=420)
    daemons.stop()
    return {**compare(world, cfg), "stuck": not done}


def malformed(world: World, args: argparse.Namespace) -> dict[str, Any]:
    cfg, path = world.fresh("malformed", "at-least-once")
    rng = random.Random(args.seed)
    t0 = float(world.live.timestamps[0])
    limit = cfg.input.max_message_bytes
    key = world.messages[0][0].decode()

    def one(kind: str) -> bytes | None:
        if kind == "random bytes":
            return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
        if kind == "truncated json":
            raw = orjson.dumps({"timestamp": t0, "key": key, "value": 1.0})
            return raw[: rng.randint(1, len(raw) - 1)]
        if kind == "wrong types":
            return orjson.dumps(rng.choice([{"timestamp": t0, "key": key, "value": "high"},
                                            {"timestamp": t0, "key": key, "value": [1]},
                                            {"timestamp": True, "key": key, "value": 1},
                                            {"timestamp": t0, "key": True, "value": 1},
                                            {"timestamp": t0, "key": {"k": 1}, "value": 1},
                                            [1, 2, 3], "text", 17]))
        if kind == "huge numbers":
            return rng.choice([b'{"timestamp": %d, "key": "%s", "value": 1e400}',
                               b'{"timestamp": %d, "key": "%s", "value": -1e300}',
                               b'{"timestamp": %d, "key": "%s", "value": Infinity}']) % (
                int(t0), key.encode())
        if kind == "NaN strings":
            return orjson.dumps({"timestamp": t0, "key": key, "value": rng.choice(
                ["NaN", "nan", "-Infinity"])})
        if kind == "missing fields":
            return orjson.dumps(rng.choice([{"key": key, "value": 1.0},
                                            {"timestamp": t0, "value": 1.0},
                                            {"timestamp": t0, "key": key}, {}]))
        if kind == "oversized":
            return b'{"timestamp": %d, "key": "x", "value": 1, "pad": "%s"}' % (
                int(t0), b"x" * (limit + 10))
        if kind == "non-UTF-8":
            return rng.choice([b'{"timestamp": %d, "key": "sensor\xed\xa0\x80", "value": 1}',
                               b'{"timestamp": %d, "key": "s\xff\xfe", "value": 1}',
                               b'{"timestamp": %d, "key": "s\\ud800", "value": 1}']) % int(t0)
        if kind == "far future":
            return orjson.dumps({"timestamp": 7_200_000_000, "key": key, "value": 1.0})
        if kind == "empty":
            return rng.choice([b"", b"[]", b"{}", b"   "])
        return None  # tombstone

    kinds = ["random bytes", "truncated json", "wrong types", "huge numbers", "NaN strings",
             "missing fields", "oversized", "non-UTF-8", "far future", "empty", "tombstone"]
    stream: list[tuple[bytes | None, bytes | None]] = list(world.messages)
    bad_at = sorted(rng.sample(range(len(stream) + args.bad), args.bad))
    mixed, is_bad = [], []
    good = iter(stream)
    bad_set = set(bad_at)
    for i in range(len(stream) + args.bad):
        if i in bad_set:
            mixed.append((b"junk", one(kinds[i % len(kinds)])))
            is_bad.append(True)
        else:
            mixed.append(next(good))
            is_bad.append(False)
    bootstrap = world.broker.bootstrap_servers
    where = send_all(bootstrap, cfg.input.topics[0], mixed)
    daemons = Daemons(path, path.parent)
    daemons.start()
    done = wait_committed(bootstrap, cfg, daemons)
    daemons.stop()
    dead = output(bootstrap, cfg.daemon.dead_letter_topic, False)
    dead_at = {(int(dict(r.headers)["streamae.partition"]), int(dict(r.headers)["streamae.offset"]))
               for r in dead}
    reasons = all(dict(r.headers).get("streamae.reason") for r in dead)
    bad_where = {w for w, b in zip(where, is_bad) if b}
    return {**compare(world, cfg), "stuck": not done, "bad sent": args.bad,
            "dead-lettered": len(dead_at & bad_where),
            "bad missing": len(bad_where - dead_at),
            "good dead-lettered": len(dead_at - bad_where), "all with reason": reasons}


def batch_error(world: World, args: argparse.Namespace, delivery: str) -> dict[str, Any]:
    """The sink raises once inside a batch (in-process daemon): the daemon stops without a
    commit; a restart must give the reference events."""
    from streamae.daemon import runner

    cfg, _ = world.fresh("error", delivery)
    bootstrap = world.broker.bootstrap_servers
    send_all(bootstrap, cfg.input.topics[0], world.messages)
    real = runner.clients.producer
    nth = max(1, len(world.expected) // 2)

    class FailsOnce:
        def __init__(self, producer: Any) -> None:
            self.producer, self.left = producer, nth

        def send(self, topic: str, *a: Any, **k: Any) -> Any:
            if topic == cfg.daemon.output_topic:
                self.left -= 1
                if self.left == 0:
                    raise RuntimeError("injected: the sink failed")
            return self.producer.send(topic, *a, **k)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.producer, name)

    runner.clients.producer = lambda *a, **k: FailsOnce(real(*a, **k))
    failed = False
    try:
        runner.Daemon(cfg, world.detector).run()
    except RuntimeError:
        failed = True
    finally:
        runner.clients.producer = real
    daemon = runner.Daemon(cfg, world.detector)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    done = wait_committed(bootstrap, cfg, None)
    daemon.stop()
    thread.join(90)
    return {**compare(world, cfg), "stuck": not (done and failed)}


def group(world: World, args: argparse.Namespace) -> dict[str, Any]:
    cfg, path = world.fresh("group", "at-least-once", session_timeout=8.0)
    daemons = Daemons(path, path.parent)
    bootstrap = world.broker.bootstrap_servers
    members = [daemons.start(name) for name in "abc"]
    time.sleep(10.0)  # all three in the group
    producer = threading.Thread(target=send_all, args=(bootstrap, cfg.input.topics[0],
                                                       world.messages, 20.0, 40))
    producer.start()
    time.sleep(random.Random(args.seed).uniform(4.0, 10.0))
    members[1].send_signal(signal.SIGKILL)
    members[1].wait()
    producer.join()
    done = wait_committed(bootstrap, cfg, daemons)
    daemons.stop()
    return {**compare(world, cfg), "stuck": not done}


def rss(world: World, args: argparse.Namespace) -> dict[str, Any]:
    """Resident memory of one daemon under a steady stream (the reference stream replayed
    with shifted timestamps, so every key keeps moving forward)."""
    cfg, path = world.fresh("rss", "at-least-once")
    bootstrap = world.broker.bootstrap_servers
    daemons = Daemons(path, path.parent)
    proc = daemons.start()
    seconds = args.rss_minutes * 60
    warm = max(60.0, seconds / 10)
    docs = [(k, orjson.loads(v)) for k, v in world.messages]
    span = float(world.live.timestamps[-1] - world.live.timestamps[0]) + 60.0
    rate = args.rss_rate
    stop = threading.Event()

    def stream() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20)
        loop, i, start = 0, 0, time.monotonic()
        while not stop.is_set():
            key, doc = docs[i]
            producer.send(cfg.input.topics[0], key=key,
                          value=orjson.dumps({**doc, "timestamp": doc["timestamp"] + loop * span}))
            i += 1
            if i == len(docs):
                i, loop = 0, loop + 1
            sent = loop * len(docs) + i
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        producer.flush()
        producer.close()

    def resident() -> float:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    writer = threading.Thread(target=stream, daemon=True)
    time.sleep(10.0)
    writer.start()
    start = time.monotonic()
    samples = [(0.0, resident())]
    while time.monotonic() - start < seconds and proc.poll() is None:
        time.sleep(10.0)
        samples.append((time.monotonic() - start, resident()))
    stop.set()
    writer.join(30)
    alive = proc.poll() is None
    daemons.stop()
    after = next((m for t, m in samples if t >= warm), samples[-1][1])
    end = samples[-1][1]
    return {"minutes": round(samples[-1][0] / 60, 1), "msg/s": rate,
            "rss start MB": round(samples[0][1], 1), "rss warm MB": round(after, 1),
            "rss end MB": round(end, 1), "growth %": round(100 * (end - after) / after, 2),
            "stuck": not alive}


# ---------------------------------------------------------------- report
def verdict(row: dict[str, Any]) -> bool:
    bad = row.get("stuck") or row.get("missing", 0) or row.get("bad missing", 0) \
        or row.get("good dead-lettered", 0) or row.get("all with reason") is False
    if row.get("mode") == "exactly-once":
        bad = bad or row.get("duplicated", 0) or row.get("extra", 0)
    if "growth %" in row:
        bad = bad or row["growth %"] >= 5.0
    return not bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--bad", type=int, default=10_000)
    parser.add_argument("--rss-minutes", type=float, default=20.0)
    parser.add_argument("--rss-rate", type=int, default=250, help="messages/s in the RSS run")
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--points", type=int, default=600, help="live points per key")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="scenarios, separated by commas (default: all)")
    args = parser.parse_args()
    names = (args.only or "kill9,broker,malformed,error,group,rss").split(",")
    work = Path(tempfile.mkdtemp(prefix="streamae-chaos-"))
    print(f"streamae chaos benchmark (seed {args.seed}); work in {work}", flush=True)
    world = build_world(args, work)
    print(f"{len(world.messages):,} messages from {args.keys} sensors on {PARTITIONS} "
          f"partitions; the file backtest gives {len(world.expected)} events", flush=True)
    plan = {
        "kill9": [(f"{args.kills} x kill -9", m, lambda m=m: kill9(world, args, m))
                  for m in ("at-least-once", "exactly-once")],
        "broker": [("broker stop 10 s", m, lambda m=m: broker_fault(world, args, m, "stop"))
                   for m in ("at-least-once", "exactly-once")]
        + [("broker kill -9", "exactly-once",
            lambda: broker_fault(world, args, "exactly-once", "kill"))],
        "malformed": [(f"{args.bad:,} malformed", "at-least-once",
                       lambda: malformed(world, args))],
        "error": [("error inside a batch", m, lambda m=m: batch_error(world, args, m))
                  for m in ("at-least-once", "exactly-once")],
        "group": [("3 members, 1 killed", "at-least-once", lambda: group(world, args))],
        "rss": [(f"RSS, {args.rss_minutes:g} min steady", "at-least-once",
                 lambda: rss(world, args))],
    }
    rows = []
    try:
        for name in names:
            for label, mode, run in plan[name]:
                started = time.monotonic()
                row = {"scenario": label, "mode": mode, **run()}
                row["seconds"] = round(time.monotonic() - started)
                row["ok"] = verdict(row)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        world.broker.close()
    columns = ["scenario", "mode", "expected", "received", "missing", "extra", "duplicated",
               "stuck", "ok"]
    print("\n" + " | ".join(columns))
    print(" | ".join("---" for _ in columns))
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in columns))
    for row in rows:
        if "bad sent" in row:
            print(f"\nmalformed: {row['bad sent']:,} sent, {row['dead-lettered']:,} "
                  f"dead-lettered, {row['bad missing']} missing, {row['good dead-lettered']} "
                  f"good messages dead-lettered, every dead letter with a reason: "
                  f"{row['all with reason']}")
        if "growth %" in row:
            print(f"\nRSS over {row['minutes']} min at {row['msg/s']} msg/s: start "
                  f"{row['rss start MB']} MB, after warm-up {row['rss warm MB']} MB, end "
                  f"{row['rss end MB']} MB, growth after warm-up {row['growth %']}%")
    (work / "chaos.json").write_text(json.dumps(rows, indent=1))
    print(f"\nfigures: {work / 'chaos.json'}")
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
