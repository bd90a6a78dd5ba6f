"""Drift on real telemetry: does the online mode adapt to a new normal without learning
real incidents away?

    python bench/drift_real.py [--data ../shared/data] [--families smd,smap_msl]
                               [--shifts recalibration,variance,none] [--seed 0]
                               [--modes offline,online,recent] [--models DIR] [--limit N]

For every SMD machine and SMAP/MSL channel: the default detector is trained on the train
split (``--models`` caches it, as ``bench/quality.py`` does), then the test split is
replayed causally, in event time, with its second half shifted (seeded, documented):

* ``recalibration``: a third of the non-constant channels (at least one) get a level shift
  of 2 training standard deviations and a gain of 1.5 around their training mean, like a
  re-calibrated sensor: the relations between channels are intact;
* ``variance``: the same channels get Gaussian noise of one training standard deviation;
* ``none``: the control, no shift.

Modes: ``offline`` (the frozen model), ``online`` (the updater with its replay buffer),
``recent`` (online with a recent-only buffer). Per run and phase (before / after the
shift, on the test labels): incidents found (event recall), composite F1 (point precision
x event recall), false alarms per 10k points, share of normal points in alarm; time (points
after the shift) until the false-alarm rate is back at the run's own pre-shift rate; update
rounds run / accepted, keys re-scaled. Then the macro average per mode and shift, and the issue's targets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from streamae.backtest import run_backtest
from streamae.config import load_config, with_overrides
from streamae.evaluate.metrics import _f1, event_scores, point_scores, segments
from streamae.types import Frame
from streamae.updater.online import OnlineUpdater

sys.path.insert(0, str(Path(__file__).parent))
from quality import Run, families, trained  # noqa: E402

SHIFTS = ("recalibration", "variance", "none")


def shifted(run: Run, shift: str, seed: int) -> tuple[Frame, int, list[int]]:
    """The test split with its second half shifted; returns it, the first shifted row and
    the shifted channels."""
    test = run.test
    start = len(test) // 2
    if shift == "none":
        return test, start, []
    rng = np.random.default_rng(seed)
    train = run.train.values.astype(np.float64)
    mean, std = np.nanmean(train, axis=0), np.nanstd(train, axis=0)
    live = np.flatnonzero(std > 1e-6)
    k = max(1, len(live) // 3)
    chans = sorted(rng.choice(live, size=min(k, len(live)), replace=False).tolist())
    values = test.values.astype(np.float64).copy()
    rows = slice(start, None)
    for c in chans:
        x = values[rows, c]
        if shift == "recalibration":
            values[rows, c] = mean[c] + 1.5 * (x - mean[c]) + 2.0 * std[c]
        elif shift == "variance":
            values[rows, c] = x + rng.normal(0.0, std[c], size=len(x))
    frame = Frame(test.timestamps, test.keys, values.astype(np.float32), test.channels,
                  test.labels)
    return frame, start, chans


def phase(labels: np.ndarray, anomaly: np.ndarray, ts: np.ndarray) -> dict[str, float]:
    ev = event_scores(labels, anomaly, ts)
    pp, _, _ = point_scores(labels, anomaly)
    y, a = labels != 0, anomaly != 0
    false_starts = [s for s, _ in segments(a) if not y[s]]
    normal = max(int((~y).sum()), 1)
    if math.isnan(pp) and ev.segments:  # incidents and no alarm at all: nothing found
        pp = 0.0
    return {"incidents": ev.segments, "found": ev.found, "recall": ev.recall,
            "composite_f1": _f1(pp, ev.recall), "fa_10k": 1e4 * len(false_starts) / len(y),
            "normal_in_alarm": float((a & ~y).sum()) / normal}


def back_after(labels: np.ndarray, anomaly: np.ndarray, start: int, base: float,
               window: int = 2000) -> int | None:
    """Points after ``start`` until a trailing ``window`` of points has a false-alarm rate
    no higher than ``base`` (per 10k); None when it never gets there."""
    y, a = labels != 0, anomaly != 0
    starts = np.zeros(len(a), dtype=np.int64)
    for s, _ in segments(a):
        if not y[s]:
            starts[s] = 1
    cum = np.concatenate([[0], np.cumsum(starts)])
    for end in range(start + window, len(a) + 1, window // 4):
        if 1e4 * (cum[end] - cum[end - window]) / window <= base + 1e-9:
            return end - start - window
    return None


def one(run: Run, detector, config, frame: Frame, start: int, mode: str) -> dict:
    updater = None
    if mode != "offline":
        cfg = config
        if mode == "recent":
            cfg = with_overrides(config, {"updater.buffer.reservoir": 0})
        updater = OnlineUpdater(cfg, detector)
    began = time.perf_counter()
    result = run_backtest(frame, detector, config, updater=updater)
    y = result.frame.labels if result.frame.labels is not None else frame.labels
    labels, anomaly, ts = np.asarray(y), result.anomaly, result.frame.timestamps
    before = phase(labels[:start], anomaly[:start], ts[:start])
    after = phase(labels[start:], anomaly[start:], ts[start:])
    rounds = result.updates or []
    return {"before": before, "after": after,
            "back_after": back_after(labels, anomaly, start, before["fa_10k"]),
            "rounds": len(rounds), "accepted": sum(1 for r in rounds if r.get("accepted")),
            "rescaled": [{**r, "key": str(r["key"])} for r in updater.rescaled] if updater
            else [],
            "seconds": round(time.perf_counter() - began, 1)}


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / ".." / "shared"
                        / "data")
    parser.add_argument("--families", default="smd,smap_msl")
    parser.add_argument("--shifts", default=",".join(SHIFTS))
    parser.add_argument("--modes", default="offline,online,recent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", type=Path, default=None, metavar="DIR")
    parser.add_argument("--limit", type=int, default=None, help="first N runs per family")
    parser.add_argument("--out", type=Path, default=Path("runs/drift_real"))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field (e.g. updater.relearn.rescale_after=0)")
    args = parser.parse_args()
    config = load_config(overrides={k: yaml.safe_load(v) for k, v in
                                    (s.split("=", 1) for s in args.set)})
    shifts, modes = args.shifts.split(","), args.modes.split(",")
    runs = [r for fam in families(args.data, args.families.split(","), None).values()
            for r in fam[: args.limit]]
    print(f"streamae drift on real telemetry: {len(runs)} series x {len(shifts)} shifts x "
          f"{len(modes)} modes (seed {args.seed})", flush=True)
    results = []
    for run in runs:
        detector = trained(run, config, args.models)
        for shift in shifts:
            frame, start, chans = shifted(run, shift, args.seed)
            for mode in modes:
                r = {"series": f"{run.family}/{run.name}", "shift": shift, "mode": mode,
                     "channels": chans, **one(run, detector, config, frame, start, mode)}
                results.append(r)
                b, a = r["before"], r["after"]
                print(f"{r['series']:28s} {shift:13s} {mode:8s} found {b['found']}/"
                      f"{b['incidents']} -> {a['found']}/{a['incidents']}  composite F1 "
                      f"{fmt(b['composite_f1'])} -> {fmt(a['composite_f1'])}  FA/10k "
                      f"{fmt(b['fa_10k'], 1)} -> {fmt(a['fa_10k'], 1)}  normal in alarm "
                      f"{100 * b['normal_in_alarm']:.1f}% -> {100 * a['normal_in_alarm']:.1f}%"
                      f"  back after {r['back_after']}  rounds {r['accepted']}/{r['rounds']}"
                      f"  re-scaled {len(r['rescaled'])}  ({r['seconds']} s)", flush=True)
    print("\nmacro average (series with incidents in the phase)")
    print("shift | mode | recall before | recall after | composite F1 before | after | "
          "normal in alarm before | after")
    print("---|---|---|---|---|---|---|---")
    summary = {}
    for shift in shifts:
        for mode in modes:
            rows = [r for r in results if r["shift"] == shift and r["mode"] == mode]

            def mean(phase_name: str, key: str) -> float:
                vals = [r[phase_name][key] for r in rows
                        if not math.isnan(r[phase_name][key] if r[phase_name][key] is not None
                                          else math.nan)]
                return float(np.mean(vals)) if vals else math.nan

            s = {f"{k}_{p}": mean(p, k) for p in ("before", "after")
                 for k in ("recall", "composite_f1", "normal_in_alarm")}
            summary[f"{shift}/{mode}"] = s
            print(f"{shift} | {mode} | {fmt(s['recall_before'])} | {fmt(s['recall_after'])} | "
                  f"{fmt(s['composite_f1_before'])} | {fmt(s['composite_f1_after'])} | "
                  f"{100 * s['normal_in_alarm_before']:.1f}% | "
                  f"{100 * s['normal_in_alarm_after']:.1f}%")
    print("\ntargets (online, per shift): composite F1 after >= 0.8x before, before >= "
          "offline's; recall after >= 0.7x offline's before; normal in alarm after <= 2x "
          "before; control: online composite F1 >= offline's")
    for shift in shifts:
        on, off = summary.get(f"{shift}/online"), summary.get(f"{shift}/offline")
        if not on or not off:
            continue
        checks = {
            "F1 after >= 0.8x before": on["composite_f1_after"] >= 0.8 * on["composite_f1_before"],
            "F1 before >= offline": on["composite_f1_before"] >= off["composite_f1_before"],
            "recall after >= 0.7x offline before": on["recall_after"] >= 0.7 * off["recall_before"],
            "normal in alarm after <= 2x before":
                on["normal_in_alarm_after"] <= 2 * max(on["normal_in_alarm_before"], 1e-4),
        }
        if shift == "none":
            checks = {"control: F1 >= offline": on["composite_f1_after"] >= off["composite_f1_after"]
                      and on["composite_f1_before"] >= off["composite_f1_before"]}
        print(f"{shift}: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift_real.json").write_text(json.dumps({"runs": results,
                                                          "summary": summary}, indent=1,
                                                         default=float))
    print(f"\nfigures: {args.out / 'drift_real.json'}")


if __name__ == "__main__":
    main()
