"""Pipeline throughput without Kafka: points/s for the default detector and each model
kind on 1, 8 and 38 channels and 1 and 1,000 keys, beside river's HalfSpaceTrees;
threshold + alarm ns/point. ``--compare REV`` also runs this benchmark as it was at git
revision REV (its own code, in a temporary worktree) and prints both side by side.

Usage: python bench/throughput.py [--rows N] [--threads T] [--hop H] [--compare REV]
Targets on a 2-core machine: >= 50,000 points/s univariate and >= 20,000 rows/s with 38
channels (default config); thresholding < 1,000 ns/point.
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
import torch
from earlier import run_at

from streamae.clock import EventClock
from streamae.config import load_config
from streamae.models.detector import untrained_detector
from streamae.pipeline import Pipeline
from streamae.threshold import Decision
from streamae.types import Frame

KINDS = ("default", "lstm", "linear", "transformer")


def frame(rows: int, keys: int, channels: int) -> Frame:
    rng = np.random.default_rng(0)
    per_key = rows // keys
    ts = np.repeat(np.arange(per_key, dtype=np.float64) * 60.0, keys)
    names = np.array([f"k{i}" for i in range(keys)], dtype=object)
    return Frame(ts, np.tile(names, per_key), rng.normal(size=(per_key * keys, channels))
                 .astype(np.float32), [f"c{i}" for i in range(channels)])


def pipeline_rate(kind: str, channels: int, keys: int, rows: int, hop: int) -> float:
    overrides = {"window.hop": hop} if kind == "default" else {"window.hop": hop,
                                                               "model": {"kind": kind}}
    config = load_config(overrides=overrides)
    detector = untrained_detector(config, channels)
    warm = keys * detector.window  # every key's first window, filled before timing
    data = frame(rows + warm, keys, channels)
    pipe = Pipeline(detector, config, EventClock())
    for i in range(0, warm, 4096):
        pipe.process(data.take(slice(i, min(i + 4096, warm))))
    start = time.perf_counter()
    for i in range(warm, len(data), 4096):
        pipe.process(data.take(slice(i, i + 4096)))
    return (len(data) - warm) / (time.perf_counter() - start)


def hst_rate(channels: int, rows: int) -> float:
    from river.anomaly import HalfSpaceTrees

    model = HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=0)
    x = np.random.default_rng(0).random((rows, channels))
    names = [f"c{i}" for i in range(channels)]
    start = time.perf_counter()
    for row in x:
        point = dict(zip(names, row.tolist()))
        model.score_one(point)
        model.learn_one(point)
    return rows / (time.perf_counter() - start)


def threshold_ns(kind: str, n: int = 2_000_000, keys: int = 1000) -> float:
    config = load_config(overrides={"threshold.kind": kind})
    rng = np.random.default_rng(0)
    slots = rng.integers(0, keys, n).astype(np.int64)
    ts = np.arange(n, dtype=np.float64)
    scores = rng.gamma(2.0, 1.0, n)
    decision = Decision(config.threshold, config.alarm)
    decision.ensure(keys)
    decision.seed({k: rng.gamma(2.0, 1.0, 2000) for k in range(keys)})
    decision.apply(slots[:1000], ts[:1000], scores[:1000])
    start = time.perf_counter()
    for i in range(0, n, 65536):
        decision.apply(slots[i:i + 65536], ts[i:i + 65536], scores[i:i + 65536])
    return (time.perf_counter() - start) / n * 1e9


def measure(args: argparse.Namespace) -> dict[tuple[str, int, int], float]:
    hop = args.hop or load_config().window.hop
    print(f"pipeline (no Kafka), hop={hop}, torch threads={args.threads}, {args.rows} rows "
          "per case; a row = one timestamp of one key, all channels")
    print(f"{'detector':<22}{'channels':>9}{'keys':>7}{'rows/s':>11}{'points/s':>12}")
    rates = {}
    for kind in KINDS:
        for channels in (1, 8, 38):
            for keys in (1, 1000):
                rows = args.rows // 2 if kind == "transformer" else args.rows
                rate = rates[kind, channels, keys] = pipeline_rate(kind, channels, keys, rows,
                                                                   hop)
                print(f"{'streamae-' + kind:<22}{channels:>9}{keys:>7}{rate:>11,.0f}"
                      f"{rate * channels:>12,.0f}", flush=True)
    for channels in (1, 38):
        rate = hst_rate(channels, 5000)
        print(f"{'river-HST(10,h8)':<22}{channels:>9}{1:>7}{rate:>11,.0f}"
              f"{rate * channels:>12,.0f}")
    for kind in ("tail", "spot"):
        print(f"threshold ({kind}) + alarm, 1,000 keys: {threshold_ns(kind):.1f} ns/point")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000, help="rows per pipeline case")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--hop", type=int, default=None, help="override window.hop")
    parser.add_argument("--compare", metavar="REV", help="also run this benchmark at git "
                        "revision REV and print both side by side")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rates = measure(args)
    if args.compare:
        print(f"\nthe same at {args.compare} (its default detector, its code):")
        before = run_at(args.compare, "throughput.py",
                        ["--rows", str(args.rows), "--threads", str(args.threads)]
                        + (["--hop", str(args.hop)] if args.hop else []))
        print(before)
        old = {(m[1], int(m[2]), int(m[3])): float(m[4].replace(",", ""))
               for m in re.finditer(r"^streamae-(\w+)\s+(\d+)\s+(\d+)\s+([\d,]+)", before, re.M)}
        print(f"{'detector':<22}{'channels':>9}{'keys':>7}{'rows/s now':>14}"
              f"{f'at {args.compare}':>16}{'ratio':>8}")
        for (kind, channels, keys), rate in rates.items():
            was = old.get((kind, channels, keys))
            if was:
                print(f"{'streamae-' + kind:<22}{channels:>9}{keys:>7}{rate:>14,.0f}"
                      f"{was:>16,.0f}{rate / was:>8.2f}")


if __name__ == "__main__":
    main()
