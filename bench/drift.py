"""Drift scenario: does the online updater bring false alarms back down after normal
behaviour changes, keep catching injected anomalies, and remember the old regime?

    python bench/drift.py [--points 14000] [--keys 6] [--epochs 8] [--runs off,replay,recent]
                          [--runs oracle]

One synthetic set (4 channels, one point a minute, injected anomalies throughout) whose
normal behaviour changes: a level shift, then a variance change, then a new seasonal
pattern, then back to the original regime. The model is trained on the clean head. The
same data is backtested (event time) with the updater off, on with the replay buffer
(recent + reservoir), and on with a recent-only buffer. Per phase: false alarms per
10,000 points (alarm starts outside labelled segments) in the first ``--settle`` points
after the change and after them, the share of normal points flagged, and recall of the
injected anomalies; and from which point of each phase on its false-alarm rate is back
at the same run's before-drift rate. AUC-PR (the mean of each key's) is also given for
each phase's first and second half: how fast the ranking adapts.

``--runs oracle`` is a yardstick no updater can be: a detector trained on each phase's own
points, the labelled anomalies dropped (the one place labels do more than score), scoring
that phase offline. Its AUC-PR is how well an adapted model would rank that phase's
anomalies.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import yaml

from streamae.backtest import run_backtest
from streamae.config import load_config, with_overrides
from streamae.evaluate.metrics import average_precision, segments
from streamae.models.detector import train_detector
from streamae.synth import Regime, generate
from streamae.updater.online import OnlineUpdater


def phase_metrics(frame, anomaly, score, bounds, names, settle):
    """Per phase: false alarms per 10k points in its first ``settle`` points and after
    them, flagged normal points (%), recall of the injected anomalies, AUC-PR of the
    scores (ranking, whatever the threshold), and where each false alarm started (points
    into the phase), for :func:`recovered_after`."""
    out = {}
    for name, (lo, hi) in zip(names, bounds):
        starts, flagged, normal, found, total, aps = [], 0, 0, 0, 0, []
        halves: dict[str, list[float]] = {}
        keys = frame.unique_keys()
        for key in keys:
            rows = np.flatnonzero(frame.keys == key)[lo:hi]
            y, a = frame.labels[rows] != 0, anomaly[rows] != 0
            starts += [s for s, _ in segments(a) if not y[s]]
            flagged += int((a & ~y).sum())
            normal += int((~y).sum())
            segs = segments(y)
            total += len(segs)
            found += sum(1 for s, e in segs if a[s: e + 30].any())  # 30-point tolerance
            if y.any():
                aps.append(average_precision(y, score[rows]))
            mid = len(rows) // 2
            for half, part in (("first", slice(0, mid)), ("second", slice(mid, None))):
                if y[part].any():
                    halves.setdefault(half, []).append(average_precision(y[part],
                                                                         score[rows][part]))
        length, starts = hi - lo, np.array(starts)
        cut = min(settle, length)
        out[name] = {"fa_first": 1e4 * (starts < cut).sum() / max(cut * len(keys), 1),
                     "fa_after": 1e4 * (starts >= cut).sum() / max((length - cut) * len(keys), 1),
                     "flagged": 100 * flagged / max(normal, 1), "found": found, "total": total,
                     "ap": float(np.mean(aps)) if aps else float("nan"),
                     **{f"ap_{h}": float(np.mean(halves[h])) if halves.get(h) else float("nan")
                        for h in ("first", "second")},
                     "starts": starts, "length": length, "keys": len(keys)}
    return out


def recovered_after(phase, rate, step=120, judge=720):
    """Points into the phase from which on its false-alarm rate stays at or below ``rate``
    (per 10k points), in ``step``s, with at least ``judge`` points left to judge by;
    None when it never does."""
    for b in range(0, phase["length"] - judge + 1, step):
        late = (phase["starts"] >= b).sum()
        if 1e4 * late / ((phase["length"] - b) * phase["keys"]) <= rate:
            return b
    return None


ORACLE = object()  # the run that trains one model per phase


def oracle(live, bounds, config):
    """Alarms and scores of every phase from a detector trained on that phase's own
    points less its labelled anomalies, scoring the phase offline."""
    anomaly = np.zeros(len(live), dtype=bool)
    score = np.full(len(live), np.nan)
    for lo, hi in bounds:
        rows = np.sort(np.concatenate([np.flatnonzero(live.keys == key)[lo:hi]
                                       for key in live.unique_keys()]))
        part = live.take(rows)
        detector = train_detector(part.take(np.flatnonzero(part.labels == 0)), config)
        result = run_backtest(part, detector, config)
        anomaly[rows], score[rows] = result.anomaly != 0, result.score
    return anomaly, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=14000)
    parser.add_argument("--keys", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field (YAML value), e.g. updater.triggers.cooldown=2h")
    parser.add_argument("--runs", default="off,replay,recent",
                        help="which runs, comma-separated: off (no updater), replay (recent + "
                        "reservoir buffer), recent (recent-only buffer of the same size), "
                        "oracle (each phase scored by a model trained on its own normal points)")
    parser.add_argument("--settle", type=int, default=720,
                        help="points after each change counted as settling (default: 12 h)")
    args = parser.parse_args()
    n = args.points
    head = n // 5
    cuts = [head, int(n * 0.35), int(n * 0.5), int(n * 0.65), int(n * 0.8), n]
    regimes = (Regime(cuts[1], cuts[2], "level"), Regime(cuts[2], cuts[3], "variance"),
               Regime(cuts[3], cuts[4], "season"))
    data = generate(n_points=n, keys=args.keys, channels=4, anomalies_per_key=n // 400,
                    regimes=regimes, clean_head=head, seed=args.seed)
    frame = data.frame
    config = load_config(overrides={
        # a small buffer (150 recent windows per key, 20 h, and as many in the reservoir):
        # the reservoir matters when the old regime returns; quick reaction: rounds 2 h
        # apart, persistent alarms admitted as new normal after 2 h
        "train.epochs": args.epochs, "updater.buffer.recent": 150 * args.keys,
        "updater.buffer.reservoir": 150 * args.keys, "updater.triggers.min_windows": 200,
        "updater.triggers.cooldown": "2h", "updater.relearn.admit_after": "2h",
        "updater.triggers.every": "1d", "updater.finetune.epochs": 10,
        "updater.finetune.batch_size": 64, "updater.finetune.lr": 3e-4,
        **{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}})
    rows_head = np.concatenate([np.flatnonzero(frame.keys == k)[:head]
                                for k in frame.unique_keys()])
    live = frame.take(np.setdiff1d(np.arange(len(frame)), rows_head))
    detector = train_detector(frame.take(np.sort(rows_head)), config)
    names = ["before drift", "level shift", "variance", "new season", "old regime again"]
    bounds = [(c0 - head, c1 - head) for c0, c1 in zip(cuts[:-1], cuts[1:])]
    runs = {"off": ("updater off", None),
            "replay": ("updater on (replay buffer)", config),
            "recent": ("updater on (recent-only buffer)", with_overrides(config, {
                "updater.buffer.reservoir": 0, "updater.buffer.recent":
                config.updater.buffer.recent + config.updater.buffer.reservoir})),
            "oracle": ("oracle: each phase by a model trained on its own normal points",
                       ORACLE)}
    runs = dict(runs[name] for name in args.runs.split(","))
    print(f"{args.keys} keys x {n} points (one a minute), {len(data.anomalies)} injected "
          f"anomalies; phases of {', '.join(str(b - a) for a, b in bounds)} points per key")
    for name, cfg in runs.items():
        start = time.perf_counter()
        if cfg is ORACLE:
            anomaly, score = oracle(live, bounds, config)
            rounds = []
        else:
            updater = OnlineUpdater(cfg, detector) if cfg is not None else None
            result = run_backtest(live, detector, cfg or config, updater=updater)
            anomaly, score, rounds = result.anomaly, result.score, result.updates
        m = phase_metrics(live, anomaly, score, bounds, names, args.settle)
        accepted = sum(r["accepted"] for r in rounds)
        pre = m[names[0]]["fa_after"]  # the steady rate before any drift, this run
        print(f"\n{name} ({time.perf_counter() - start:.0f} s; {len(rounds)} rounds, "
              f"{accepted} accepted); pre-drift rate {pre:.1f} false alarms per 10k points:")
        print(f"  {'phase':<18} {'FA/10k first ' + str(args.settle):>18} {'FA/10k after':>13}"
              f" {'normal flagged':>15} {'recall':>8} {'AUC-PR':>7} {'halves':>10}"
              f" {'at pre-drift rate from':>23}")
        for phase, p in m.items():
            back = recovered_after(p, pre) if phase != names[0] else None
            since = "-" if phase == names[0] else f"{back} points" if back is not None else "never"
            print(f"  {phase:<18} {p['fa_first']:18.1f} {p['fa_after']:13.1f} "
                  f"{p['flagged']:14.2f}% {p['found']:>4}/{p['total']:<3} {p['ap']:7.3f} "
                  f"{p['ap_first']:4.2f} {p['ap_second']:4.2f} {since:>23}")
        for r in rounds:
            when = (r["at"] - live.timestamps.min()) / 60
            print(f"    round at point {when:6.0f} ({r['reason']}): "
                  + ("accepted" if r["accepted"] else "rejected: " + "; ".join(r["reasons"])))


if __name__ == "__main__":
    main()
