"""End-to-end daemon throughput and latency on a real broker, beside a do-nothing daemon.

    python bench/daemon_e2e.py [--points 300000] [--keys 1000] [--rate 10000]
                               [--bootstrap-servers H:P] [--only throughput|latency]
                               [--compare REV]

1. Throughput: one topic pre-filled with ``--points`` JSON messages (default layout, one
   value each, ``--keys`` sensors). The do-nothing daemon (consume, decode, produce one
   small message per 100 inputs, flush + commit every poll) and the streamae daemon
   (in-process, default config), with and without the state topic
   (per-partition key snapshots at every commit), each read all of it with their own
   consumer group; messages/s from first record to last commit.
2. Latency: ``streamae run`` as its own process; a producer process writes ``--rate``
   points/s with frequent injected spikes; this process reads the events. Latency = event
   received here minus the CreateTime of the input record that triggered it (its offset is
   in the event's ``source``). p50/p95/p99 reported.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamae.broker import DevBroker, free_port
from streamae.config import config_to_dict, load_config
from streamae.daemon import clients
from streamae.daemon.runner import Daemon
from streamae.models.detector import train_detector
from streamae.types import Frame


def messages(n: int, keys: int, seed: int = 0, spike_every: int = 0) -> list[bytes]:
    """``n`` messages round-robin over ``keys`` sensors, one minute apart per sensor."""
    rng = np.random.default_rng(seed)
    t0 = 1_767_225_600.0
    out = []
    for i in range(n):
        k, step = i % keys, i // keys
        v = np.sin(step / 50 + k) + 0.1 * rng.standard_normal()
        if spike_every and step % spike_every == spike_every - 1:
            v += 8.0
        out.append(orjson.dumps({"timestamp": t0 + 60 * step, "key": f"sensor-{k}",
                                 "value": round(float(v), 4)}))
    return out


def training_frame(keys: int = 8, points: int = 3000) -> Frame:
    """Normal history from the same generator as the benchmark stream (no spikes)."""
    docs = [orjson.loads(m) for m in messages(keys * points, keys, seed=9)]
    return Frame(np.array([d["timestamp"] for d in docs]),
                 np.array([d["key"] for d in docs], dtype=object),
                 np.array([[d["value"]] for d in docs], dtype=np.float32), ["value"])


def fill(bootstrap: str, topic: str, payloads: list[bytes], keyed: bool = False) -> None:
    """Write ``payloads`` to partition 0, or (``keyed``) keyed by sensor over all partitions."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20,
                             batch_size=256 * 1024)
    for p in payloads:
        if keyed:
            producer.send(topic, key=orjson.loads(p)["key"].encode(), value=p)
        else:
            producer.send(topic, value=p, partition=0)
    producer.flush()
    producer.close()


@contextlib.contextmanager
def kafka_for(bootstrap: str | None, work: Path) -> Iterator[str]:
    """The given cluster's address, or a local broker in ``work`` while the block runs."""
    if bootstrap:
        yield bootstrap
        return
    with DevBroker(port=free_port(), data_dir=work / "broker") as broker:
        yield broker.bootstrap_servers


def do_nothing(bootstrap: str, topic: str, total: int) -> float:
    """Consume, decode, produce one small message per 100 inputs, flush+commit per poll."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="bench-noop",
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             max_poll_records=2000, fetch_max_wait_ms=100)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    seen, start = 0, None
    while seen < total:
        polled = consumer.poll(timeout_ms=100)
        for records in polled.values():
            start = start or time.perf_counter()
            for r in records:
                orjson.loads(r.value)
                seen += 1
                if seen % 100 == 0:
                    producer.send("bench.noop-out", value=b'{"n": %d}' % seen)
        if polled:
            producer.flush()
            consumer.commit()
    elapsed = time.perf_counter() - start
    consumer.close()
    producer.close()
    return total / elapsed


def streamae_throughput(config, detector, total: int) -> tuple[float, dict]:
    daemon = Daemon(config, detector)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    start = None
    while True:
        done = sum(daemon.positions.values())
        if start is None and done > 0:
            start, first = time.perf_counter(), done
        if done >= total and not daemon.dirty:
            break
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    daemon.stop()
    thread.join()
    return (total - first) / elapsed, daemon.pipeline.counts()


def paced_producer(bootstrap: str, topic: str, payloads: list[bytes], rate: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    start = time.perf_counter()
    for i in range(0, len(payloads), per_tick):
        for p in payloads[i: i + per_tick]:
            producer.send(topic, value=p, partition=0)
        target = start + (i // per_tick + 1) * tick
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    producer.flush()
    producer.close()


def latency_run(bootstrap: str, config, model_dir: Path, work: Path, rate: int,
                seconds: float, keys: int) -> dict:
    cfg = config_to_dict(config)
    cfg["daemon"].update(model=str(model_dir), http_port=0, state_dir=str(work / "lat-state"),
                         group_id="bench-latency", output_topic="bench.lat-events")
    cfg["input"]["topics"] = ["bench.lat-in"]
    cfg["kafka"]["bootstrap_servers"] = bootstrap
    path = work / "latency.yaml"
    path.write_text(yaml.safe_dump(orjson.loads(orjson.dumps(cfg))))
    clients.ensure_topics(config.kafka, ["bench.lat-in", "bench.lat-events"])
    env = {**os.environ, "OMP_NUM_THREADS": str(config.scoring.threads)}
    daemon = subprocess.Popen([sys.executable, "-m", "streamae", "run", "--config", str(path)],
                              env=env, stderr=open(work / "latency-daemon.log", "wb"))
    events = KafkaConsumer("bench.lat-events", bootstrap_servers=bootstrap, group_id=None,
                           auto_offset_reset="earliest", fetch_max_wait_ms=10)
    time.sleep(8)  # daemon start-up (torch import, numba compile, group join)
    payloads = messages(int(rate * seconds), keys, seed=1, spike_every=1500)
    producer = mp.get_context("spawn").Process(
        target=paced_producer, args=(bootstrap, "bench.lat-in", payloads, rate))
    producer.start()
    received: list[tuple[float, int]] = []
    deadline = time.monotonic() + seconds + 30
    while time.monotonic() < deadline:
        for records in events.poll(timeout_ms=50).values():
            now = time.time()
            received += [(now, orjson.loads(r.value)["source"]["offset_last"]) for r in records]
        if not producer.is_alive() and time.monotonic() > deadline - 25:
            break
    producer.join()
    daemon.terminate()
    daemon.wait(60)
    events.close()
    created = _create_times(bootstrap, "bench.lat-in", max((o for _, o in received), default=0))
    lat = np.array([now - created[o] for now, o in received if o < len(created)]) * 1000
    return {"events": len(lat), "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p95_ms": float(np.percentile(lat, 95)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None}


def _create_times(bootstrap: str, topic: str, upto: int) -> np.ndarray:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    times = np.zeros(upto + 1)
    while True:
        polled = consumer.poll(timeout_ms=500)
        if not polled:
            break
        for r in polled.get(tp, []):
            if r.offset <= upto:
                times[r.offset] = r.timestamp / 1000
        if consumer.position(tp) > upto:
            break
    consumer.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=10_000, help="points/s in the latency run")
    parser.add_argument("--seconds", type=float, default=30.0, help="latency run length")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--only", choices=["throughput", "latency"])
    parser.add_argument("--compare", metavar="REV", help="also run this benchmark (same "
                        "arguments) as it was at git revision REV and print its figures after")
    parser.add_argument("--bootstrap-servers")
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    config = load_config(overrides={"train.epochs": 2, "train.max_windows": 5000, **overrides})
    import torch

    torch.set_num_threads(config.scoring.threads)
    work = Path(tempfile.mkdtemp(prefix="streamae-bench-"))
    with kafka_for(args.bootstrap_servers, work) as bootstrap:
        config = dataclasses.replace(
            config, kafka=dataclasses.replace(config.kafka, bootstrap_servers=bootstrap))
        detector = train_detector(training_frame(), config)
        model_dir = work / "model"
        detector.save(model_dir)
        if args.only != "latency":
            throughput(args, config, detector, bootstrap, work)
        if args.only != "throughput":
            lat = latency_run(bootstrap, config, model_dir, work, args.rate, args.seconds,
                              min(args.keys, 100))
            print(f"\nproduce-to-event latency at {args.rate:,} points/s for "
                  f"{args.seconds:.0f} s ({lat['events']} events): p50 {lat['p50_ms']:.0f} ms, "
                  f"p95 {lat['p95_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms")
    if args.compare:
        from earlier import run_at

        argv, same = sys.argv[1:], []
        for i, a in enumerate(argv):
            if not (a.startswith("--compare") or (i and argv[i - 1] == "--compare")):
                same.append(a)
        print(f"\nthe same at {args.compare} (its default detector, its code, its broker):")
        print(run_at(args.compare, "daemon_e2e.py", same))


def throughput(args, config, detector, bootstrap: str, work: Path) -> None:
    clients.ensure_topics(config.kafka, ["bench.in", "bench.noop-out"])
    fill(bootstrap, "bench.in", messages(args.points, args.keys))
    noop = do_nothing(bootstrap, "bench.in", args.points)
    cfg = dataclasses.replace(config, input=dataclasses.replace(config.input,
                                                                topics=["bench.in"]),
                              daemon=dataclasses.replace(
                                  config.daemon, group_id="bench-streamae", http_port=0,
                                  state_dir=str(work / "state"),
                                  output_topic="bench.events"))
    ours, counts = streamae_throughput(cfg, detector, args.points)
    local = dataclasses.replace(cfg, daemon=dataclasses.replace(
        cfg.daemon, group_id="bench-streamae-local", state_topic=None,
        state_dir=str(work / "state-local")))
    alone, _ = streamae_throughput(local, detector, args.points)
    print(f"\nthroughput, {args.points} points, {args.keys} keys, window "
          f"{config.window.size} hop {config.window.hop}, {config.model.kind}, commit every "
          f"{config.daemon.commit_every:g} s:")
    print(f"  do-nothing daemon                  {noop:10,.0f} msg/s")
    print(f"  streamae daemon                    {ours:10,.0f} msg/s  "
          f"({ours / noop:.0%} of do-nothing)")
    print(f"  streamae, no state topic           {alone:10,.0f} msg/s  "
          f"(state topic costs {1 - ours / alone:.0%})")


if __name__ == "__main__":
    main()
