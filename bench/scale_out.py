"""Throughput with 1, 2 and 3 daemons in one consumer group, side by side in one run.

    python bench/scale_out.py [--points 240000] [--keys 600] [--partitions 6]
                              [--daemons 1,2,3] [--bootstrap-servers H:P]

One topic with ``--partitions`` partitions is filled with ``--points`` JSON messages
keyed by sensor (so each sensor stays on one partition). For each daemon count, that many
``streamae run`` processes (one torch thread each, default LSTM, W=64 hop 8) join a fresh
consumer group and read the whole topic; throughput = messages / (time from starting the
daemons to the group's committed offsets reaching the end), start-up (imports, Numba
compile, group join: a few seconds) included. On a 2-core machine with the broker on it, expect little gain beyond
one daemon: the cores, not the partitions, are the limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml
from kafka import KafkaConsumer, TopicPartition

from streamae.config import config_to_dict, load_config
from streamae.daemon import clients
from streamae.models.detector import train_detector

sys.path.insert(0, str(Path(__file__).parent))
from daemon_e2e import fill, kafka_for, messages, training_frame  # noqa: E402


def committed_total(bootstrap: str, group: str, partitions: list[TopicPartition]) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        return sum(consumer.committed(tp) or 0 for tp in partitions)
    finally:
        consumer.close()


def run_group(n: int, config_path: Path, work: Path, bootstrap: str, group: str,
              partitions: list[TopicPartition], total: int) -> float:
    """Seconds from start until the group has committed every message."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    procs = []
    start = time.monotonic()
    for i in range(n):
        log = open(work / f"{group}-{i}.log", "wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "streamae", "run", "--config", str(config_path),
             "--group-id", group, "--state-dir", str(work / f"{group}-state-{i}"),
             "--set", f"daemon.instance_id={group}-{i}"], env=env, stderr=log))
    try:
        while committed_total(bootstrap, group, partitions) < total:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a daemon exited; see {work}/{group}-*.log")
            time.sleep(0.5)
        return time.monotonic() - start
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=240_000)
    parser.add_argument("--keys", type=int, default=600)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--daemons", default="1,2,3")
    parser.add_argument("--bootstrap-servers")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="streamae-scale-"))
    with kafka_for(args.bootstrap_servers, work) as bootstrap:
        config = load_config(overrides={"train.epochs": 2, "train.max_windows": 5000,
                                        "scoring.threads": 1})
        config = dataclasses.replace(config, kafka=dataclasses.replace(
            config.kafka, bootstrap_servers=bootstrap))
        model_dir = work / "model"
        train_detector(training_frame(), config).save(model_dir)
        topic = "bench.scale-in"
        clients.ensure_topics(config.kafka, [topic], args.partitions)
        fill(bootstrap, topic, messages(args.points, args.keys), keyed=True)
        raw = config_to_dict(config)
        raw["daemon"].update(model=str(model_dir), http_port=0, output_topic="bench.scale-events",
                             commit_every=1.0)
        raw["input"]["topics"] = [topic]
        path = work / "scale.yaml"
        path.write_text(yaml.safe_dump(orjson.loads(orjson.dumps(raw))))
        partitions = [TopicPartition(topic, p) for p in range(args.partitions)]
        print(f"{args.points:,} messages, {args.keys} sensors, {args.partitions} partitions, "
              f"{os.cpu_count()} cores (broker on the same machine)")
        results = {}
        for n in (int(d) for d in args.daemons.split(",")):
            seconds = run_group(n, path, work, bootstrap, f"bench-scale-{n}", partitions,
                                args.points)
            results[n] = seconds
            print(f"  {n} daemon(s): {seconds:6.1f} s to commit everything "
                  f"(start-up included) -> {args.points / seconds:9,.0f} msg/s", flush=True)
        base = results.get(1)
        if base:
            print("  speed-up over one daemon: " + ", ".join(
                f"{n}: {base / s:.2f}x" for n, s in results.items()))


if __name__ == "__main__":
    main()
