"""Memory per key: the pipeline's state (windows, thresholds, alarms) and process RSS as
the number of keys grows, for sizing a daemon.

    python bench/keys_memory.py [--keys 1000,10000,50000] [--channels 1]

Each key gets 200 points (a full window and a warm threshold) through one pipeline with
the default LSTM; reported: checkpoint state bytes and resident memory growth per 1,000
keys.
"""

from __future__ import annotations

import argparse
import resource

import numpy as np

from streamae.config import load_config
from streamae.models.detector import train_detector
from streamae.pipeline import Pipeline
from streamae.synth import generate
from streamae.types import Frame


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", default="1000,10000,50000")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--points", type=int, default=200)
    args = parser.parse_args()
    config = load_config(overrides={"train.epochs": 1, "scoring.threads": 1})
    detector = train_detector(generate(n_points=2000, keys=2, channels=args.channels,
                                       seed=0).frame, config)
    print(f"{args.channels} channel(s), window {config.window.size}, {args.points} points a key")
    print(f"{'keys':>8} {'state MB':>9} {'RSS growth MB':>14} {'per 1,000 keys (state / RSS)':>30}")
    for n in (int(k) for k in args.keys.split(",")):
        pipeline = Pipeline(detector, config)
        pipeline.warm_up()
        base = rss_mb()
        rng = np.random.default_rng(0)
        names = np.array([f"sensor-{i}" for i in range(n)], dtype=object)
        for step in range(args.points):
            values = rng.normal(size=(n, args.channels)).astype(np.float32)
            pipeline.process(Frame(np.full(n, 1.7e9 + 60.0 * step), names, values,
                                   list(detector.channels)))
        state = pipeline.state()
        state_mb = sum(a.nbytes for a in state.arrays.values()) / 2**20
        grown = rss_mb() - base
        print(f"{n:>8} {state_mb:>9.1f} {grown:>14.1f} "
              f"{1000 * state_mb / n:>17.2f} / {1000 * grown / n:.2f} MB")
        del pipeline, state


if __name__ == "__main__":
    main()
