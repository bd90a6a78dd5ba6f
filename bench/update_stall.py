"""Does scoring stall while the updater fine-tunes? Per-batch scoring latency of the
pipeline with and without an update round running on a background thread (CPU).

    python bench/update_stall.py [--keys 200] [--batches 300]

Target: p99 latency during a round at most 1.5x the p99 without one. The sensors are
synchronised, so a window closes for every key at once every ``hop`` points: most batches
score nothing and every few batches score one window per key; p99 is those bursts.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time

import numpy as np
import torch

from streamae.config import load_config
from streamae.models.dataset import training_windows
from streamae.models.detector import train_detector
from streamae.pipeline import Pipeline
from streamae.synth import generate
from streamae.updater.finetune import fine_tune


def latencies(pipeline: Pipeline, frames: list, stop: threading.Event | None = None) -> np.ndarray:
    out = []
    for frame in frames:
        start = time.perf_counter()
        pipeline.process(frame)
        out.append(time.perf_counter() - start)
        if stop is not None and stop.is_set():
            break
    return np.array(out) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    config = load_config(overrides={"train.epochs": 2, "train.max_windows": 5000})
    torch.set_num_threads(config.scoring.threads)
    data = generate(n_points=2 * args.batches * 64 // args.keys + 400, keys=args.keys,
                    channels=4, seed=1).frame
    detector = train_detector(data.take(slice(0, 20000)), config)
    order = data.event_time_order()
    rows = 512  # one poll's worth of points: 64 windows at hop 8
    frames = [data.take(order[i: i + rows]) for i in range(0, len(order) - rows, rows)]
    half = len(frames) // 2
    windows = training_windows(data, detector.scaler, detector.window, 1, 20000).train
    cfg = dataclasses.replace(config.updater.finetune, epochs=50, time_budget=15.0, device="cpu")

    pipeline = Pipeline(detector, config)
    latencies(pipeline, frames[:20])  # warm up
    quiet = latencies(pipeline, frames[20:half])
    stop = threading.Event()
    worker = threading.Thread(target=lambda: (fine_tune(detector, windows, cfg), stop.set()),
                              daemon=True)
    worker.start()
    time.sleep(1.0)
    busy = latencies(pipeline, frames[half:], stop)
    tuned = stop.is_set()
    print(f"pipeline batches of {rows} points ({args.keys} keys), torch threads "
          f"{torch.get_num_threads()}, fine-tune on a thread of the same process:")
    for name, lat in (("no update round", quiet), ("during a round", busy)):
        print(f"  {name:<16} p50 {np.percentile(lat, 50):7.1f} ms   p99 "
              f"{np.percentile(lat, 99):7.1f} ms   ({len(lat)} batches)")
    ratio = np.percentile(busy, 99) / np.percentile(quiet, 99)
    print(f"  p99 ratio {ratio:.2f} (target <= 1.5){'; the round ended early' if tuned else ''}")
    worker.join()


if __name__ == "__main__":
    main()
