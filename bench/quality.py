"""Detection quality: streamae's default detector beside the baselines on every labelled
series in the shared data, and an ablation of each piece of the default, in one run.

    python bench/quality.py [--data ../shared/data] [--families nab,smd,smap_msl,ucr]
                            [--ablations default|none|all|NAME,...] [--nab-series N]
                            [--out runs/quality] [--set field=value ...] [--starts N]

Protocol (no point adjustment, labels used only to score): every run trains on its train
part only (SMD and SMAP/MSL: the ``_train`` files; NAB: each series' first 15%, NAB's
probationary period, all 58 series as keys of one model) and streams its test part
through the same pipeline the daemon runs, each point scored from its past. Baselines
(PCA on lagged windows, IsolationForest, rolling z-score, k-means distance on
z-normalised subsequences) learn from the same training rows and go through the same
threshold and alarm stages, their thresholds seeded from their own held-out scores as
streamae's are.

Per family: macro AUC-PR and VUS-PR over series, event precision/recall/F1 of each
detector's own alarms, composite F1 (point precision x event recall), the share of
normal points inside an alarm (an alarm that never closes finds every event: this shows
what it costs), alarms per labelled event, the NAB standard score over the family's
series, and streamae's AUC-PR over the best baseline's. The ablation table switches one piece off at a time (or
swaps it): most variants reuse the trained default (members, calibration, threshold and
alarm settings are re-fitted on the held-out windows, not on test labels); the ones
marked "retrained" train again. Figures, each series' own among them, also go to
``OUT/quality.json``.

``--starts N`` scores every detector N times, each series' test stream starting 0, 8/N,
... 8 (N-1)/N points later (points dropped before any is scored), and prints streamae's
alarm figures at each start and every detector's mean and range. Nothing about a
detector changes, only which points its threshold samples and where its hops fall, so
the range is the noise of one alarm figure: compare variants on the mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from streamae.backtest import run_backtest
from streamae.config import Config, load_config
from streamae.evaluate import nab
from streamae.evaluate.datasets import load
from streamae.evaluate.report import evaluate, run_baselines
from streamae.jobs import head_mask
from streamae.novelty import NoveltySettings
from streamae import novelty
from streamae.models.calibration import Calibration
from streamae.models.dataset import training_windows
from streamae.models.detector import (Detector, calibrated, novelty_settings,
                                      train_detector)
from streamae.models.linear_ae import LinearAutoencoder
from streamae.types import Frame

BASELINES = ("pca", "isolation-forest", "rolling-zscore", "kmeans")
MACRO = ("auc_pr", "vus_pr", "event_precision", "event_recall", "event_f1",
         "composite_f1", "normal_in_alarm")
COLUMNS = (*MACRO, "alarms_per_event", "nab_standard")


@dataclass
class Run:
    family: str
    name: str
    train: Frame
    test: Frame
    mask: np.ndarray  # test rows that are scored (NAB: after each series' training head)


def families(data: Path, chosen: list[str], nab_series: int | None) -> dict[str, list[Run]]:
    """The labelled runs of each family found under ``data``."""
    out: dict[str, list[Run]] = {}
    for family in chosen:
        runs = []
        if family == "nab" and (data / "nab").is_dir():
            whole = next(load("nab", data / "nab")).test
            keys = whole.unique_keys()
            if nab_series and nab_series < len(keys):  # evenly over the sorted series
                pick = set(keys[i] for i in np.linspace(0, len(keys) - 1, nab_series).astype(int))
                whole = whole.take(np.isin(whole.keys, list(pick)))
            head = head_mask(whole, 0.15)
            runs.append(Run("nab", "nab", whole.take(head), whole, ~head))
        elif family == "smd" and (data / "smd").is_dir():
            runs += [Run("smd", r.name, r.train, r.test, np.ones(len(r.test), bool))
                     for r in load("smd", data / "smd")]
        elif family == "smap_msl" and (data / "smap_msl").is_dir():
            for craft in sorted(p for p in (data / "smap_msl").iterdir() if p.is_dir()):
                runs += [Run("smap_msl", f"{craft.name}/{r.name}", r.train, r.test,
                             np.ones(len(r.test), bool)) for r in load("smd", craft)]
        elif family == "ucr" and (data / "ucr").is_dir():
            runs += [Run("ucr", r.name, r.train, r.test, np.ones(len(r.test), bool))
                     for r in load("ucr", data / "ucr")]
        if runs:
            out[family] = runs
    return out


# ---------------------------------------------------------------- variants
Variant = Callable[[Detector, Run, Config], tuple[Detector, Config]]


def held_out(detector: Detector, run: Run, config: Config
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out windows the default was calibrated on (same split, same function),
    their keys and their novelty distances."""
    split = training_windows(run.train, detector.scaler, detector.window, config.train.stride,
                             config.train.max_windows, config.train.val_fraction)
    distances, _ = novelty.held_out(run.train, detector.scaler, split.val_keys,
                                    split.val_ends, novelty_settings(config), detector.window,
                                    config.window.hop)
    return split.val, split.val_keys, distances


def recalibrated(**settings) -> Variant:
    def variant(detector: Detector, run: Run, config: Config) -> tuple[Detector, Config]:
        windows, keys, distances = held_out(detector, run, config)
        cal = dataclasses.replace(detector.calibration, **settings)
        return dataclasses.replace(detector, calibration=cal.refit(
            detector.errors(windows, 1024), keys, distances if cal.novelty.on else None)
        ), config
    return variant


def member(index: int) -> Variant:
    """One member of the default ensemble on its own (with the novelty member, as the
    default has it), calibrated on the same windows."""
    def variant(detector: Detector, run: Run, config: Config) -> tuple[Detector, Config]:
        model = detector.model.members[index]
        windows, keys, distances = held_out(detector, run, config)
        c = detector.calibration
        cal = Calibration.fit(Detector.errors_of(model, windows), keys,
                              [list(range(len(model.heads)))], c.hop, c.aggregate, c.top_k,
                              c.smooth, c.floor, c.per_channel, c.novelty, distances)
        cal.novelty_seeds = c.novelty_seeds
        return dataclasses.replace(detector, model=model,
                                   model_config=detector.model_config.members[index],
                                   calibration=cal), config
    return variant


def configured(**sections) -> Variant:
    """The same detector with other threshold/alarm settings (dotted overrides)."""
    def variant(detector: Detector, run: Run, config: Config) -> tuple[Detector, Config]:
        return detector, override(config, sections)
    return variant


def retrained(**sections) -> Variant:
    def variant(detector: Detector, run: Run, config: Config) -> tuple[Detector, Config]:
        config = override(config, sections)
        return train_detector(run.train, config), config
    return variant


def override(config: Config, dotted: dict) -> Config:
    from streamae.config import with_overrides

    return with_overrides(config, {k.replace("__", "."): v for k, v in dotted.items()})


ABLATIONS: dict[str, tuple[str, Variant]] = {
    "no novelty": ("the models alone, without each key's memory of its recent windows",
                   recalibrated(novelty=NoveltySettings())),
    "no per-channel calibration": ("one error scale for all channels of a head",
                                   recalibrated(per_channel=False)),
    "no smoothing": ("each point's own error, not the mean of the newest steps",
                     recalibrated(smooth=1)),
    "mean over channels": ("mean instead of top-k across channels",
                           recalibrated(aggregate="mean")),
    "lstm only": ("the ensemble without its linear member", member(0)),
    "linear only": ("the ensemble without its deep autoencoder", member(1)),
    "no forecast head (retrained)": ("the LSTM reconstructs only",
                                     retrained(**{"model.members.0.forecast": False})),
    "auto window (retrained)": ("window from the dominant period",
                                retrained(**{"window.size": "auto"})),
    "no likelihood scale": ("SPOT over all past scores instead of each key's recent tail",
                            configured(**{"threshold.kind": "spot"})),
    "no held-out prior on young tails": ("a key's young memory fits its tail to its own "
                                         "peaks alone",
                                         configured(**{"threshold.prior_peaks": 0.0})),
    "no shape bound": ("a key's threshold may lie as far above the bulk of its scores as "
                       "its tail puts it", configured(**{"threshold.shape_bound": 0.0})),
    "no alarm post-processing": ("resolve at the first calm point, no hit count, no pruning",
                                 configured(**{"alarm.resolve_after": "1 points",
                                               "alarm.min_hits": 1, "alarm.hit_window": 1,
                                               "alarm.prune": 0.0, "alarm.suppress": 0})),
}
QUICK = [k for k in ABLATIONS if "retrained" not in k]


# ---------------------------------------------------------------- scoring
def family_metrics(runs: list[Run], results: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Macro metrics over the family's series, alarms per labelled event, the NAB
    standard score over all of its series, and each labelled series' own figures."""
    per_key, series, alarms, segments = [], [], 0, 0
    listed: dict[str, dict] = {}
    for run, (score, anomaly) in zip(runs, results):
        report = evaluate(run.test, score, anomaly, run.mask, 0.0, 0.0, False, 0.0)
        for key, m in report["per_key"].items():
            if m["segments"]:
                per_key.append(m)
                name = run.name if run.name.endswith(str(key)) else f"{run.name}/{key}"
                listed[name] = {c: m[c] for c in (*MACRO, "alarms", "segments")}
            alarms += m["alarms"]
            segments += m["segments"]
        order = run.test.event_time_order()
        keys = run.test.keys[order]
        for key in run.test.unique_keys():
            rows = order[(keys == key) & run.mask[order]]
            series.append(nab.score_series(run.test.labels[rows],
                                           nab.detections_from_alarms(anomaly[rows]), 0.0))
    out = {c: _mean([m[c] for m in per_key]) for c in MACRO}
    out["alarms_per_event"] = alarms / max(segments, 1)
    out["nab_standard"] = nab.normalized(series)["standard"]
    out["series"] = len(per_key)
    out["per_series"] = listed
    return out


def later(run: Run, points: int) -> Run:
    """The run with each series' first ``points`` test points dropped."""
    if not points:
        return run
    order = run.test.event_time_order()
    keep = np.ones(len(run.test), bool)
    keys = run.test.keys[order]
    for key in run.test.unique_keys():
        keep[order[keys == key][:points]] = False
    return Run(run.family, run.name, run.train, run.test.take(keep), run.mask[keep])


def sensitivity(runs: dict[str, list[Run]], results: dict[str, dict[str, list]],
                offsets: list[int], detectors: list[str]) -> dict:
    """Per family: streamae's alarm figures at each start offset, and every detector's
    mean and range over the starts."""
    cols = ("event_f1", "composite_f1", "alarms_per_event", "nab_standard")
    out = {}
    for family, family_runs in runs.items():
        shifted = {j: [later(r, j) for r in family_runs] for j in offsets}
        per = {d: {j: family_metrics(shifted[j], results[family][f"{d} @{j}"])
                   for j in offsets} for d in detectors}
        rows = {f"streamae, start {j}": {c: per["streamae"][j][c] for c in cols}
                for j in offsets}
        summary = {}
        for d in detectors:
            values = np.array([[per[d][j][c] for c in cols] for j in offsets], dtype=float)
            summary[d] = {"mean": dict(zip(cols, values.mean(axis=0))),
                          "range": dict(zip(cols, np.ptp(values, axis=0)))}
            rows[f"{d}, mean"] = summary[d]["mean"]
            rows[f"{d}, range"] = summary[d]["range"]
        out[family] = {"streamae_per_start": {j: rows[f"streamae, start {j}"]
                                              for j in offsets}, **summary}
        print(f"\n## {family}: alarms over {len(offsets)} starts (each series' stream "
              f"starting {', '.join(map(str, offsets))} points later)\n")
        print(table(rows, cols))
    return out


def _mean(values: list[float]) -> float:
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else math.nan


def table(rows: dict[str, dict], columns=COLUMNS) -> str:
    lines = ["| detector | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, m in rows.items():
        cells = []
        for c in columns:
            v = m.get(c, math.nan)
            cells.append("n/a" if isinstance(v, float) and math.isnan(v) else
                         f"{v:.1f}" if c == "nab_standard" else
                f"{100 * v:.1f}%" if c == "normal_in_alarm" else f"{v:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data", type=Path)
    ap.add_argument("--families", default="nab,smd,smap_msl,ucr")
    ap.add_argument("--ablations", default="default",
                    help="default: every ablation that needs no retraining; all: also the "
                    "retrained ones; none; or names separated by commas")
    ap.add_argument("--nab-series", type=int, default=None,
                    help="evenly chosen NAB series (default: all 58)")
    ap.add_argument("--baselines", default=",".join(BASELINES))
    ap.add_argument("--out", default="runs/quality", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a config field of the detector under test")
    ap.add_argument("--models", type=Path, default=None, metavar="DIR",
                    help="keep each run's trained default in DIR and reuse it when the "
                    "training settings (window, model, train, calibration) are the same: "
                    "quick reruns with other threshold or alarm settings")
    ap.add_argument("--starts", type=int, default=1, metavar="N",
                    help="also score every detector with each series' stream starting 0 to "
                    "7 points later, N evenly spaced starts: the noise of an alarm figure "
                    "(default: 1, off)")
    args = ap.parse_args()
    if not 1 <= args.starts <= 8:
        raise SystemExit(f"--starts must be 1 to 8; got {args.starts}")
    offsets = [8 * k // args.starts for k in range(args.starts)] if args.starts > 1 else []
    config = load_config(overrides={k: yaml.safe_load(v) for k, v in
                                    (s.split("=", 1) for s in args.set)})
    names = {"default": QUICK, "all": list(ABLATIONS), "none": []}.get(
        args.ablations, [a.strip() for a in args.ablations.split(",") if a.strip()])
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise SystemExit(f"unknown ablation(s) {unknown}; known: {', '.join(ABLATIONS)}")
    baselines = [b for b in args.baselines.split(",") if b]
    runs = families(args.data, args.families.split(","), args.nab_series)
    if not runs:
        raise SystemExit(f"no labelled data under {args.data} (see ../shared/data/README.md)")
    started = time.perf_counter()
    print(f"streamae quality benchmark: {', '.join(f'{f} ({len(r)} runs)' for f, r in runs.items())}"
          + (f"; NAB subsampled to {args.nab_series} series" if args.nab_series else ""))
    detectors = ["streamae", *baselines]
    results: dict[str, dict[str, list]] = {
        f: {d: [] for d in [*detectors, *names,
                            *(f"{d} @{j}" for d in detectors for j in offsets[1:])]}
        for f in runs}
    for by_detector in results.values():  # the first start is the main run
        by_detector.update({f"{d} @0": by_detector[d] for d in detectors if offsets})
    training: dict[str, list] = {}
    total = sum(len(r) for r in runs.values())
    with tqdm(total=total, unit="run", desc="runs", mininterval=5) as bar:
        for family, family_runs in runs.items():
            for run in family_runs:
                bar.set_postfix_str(f"{family}/{run.name}: training")
                t0 = time.perf_counter()
                detector = trained(run, config, args.models)
                training.setdefault(family, []).append(
                    {"run": run.name, "seconds": round(time.perf_counter() - t0, 1),
                     **{k: detector.info["training"][k]
                        for k in ("epochs", "best_epoch", "stopped")}})
                bar.set_postfix_str(f"{family}/{run.name}: scoring")
                results[family]["streamae"].append(score(run, detector, config))
                shifted = {j: later(run, j) for j in offsets[1:]}
                for j, moved in shifted.items():
                    results[family][f"streamae @{j}"].append(score(moved, detector, config))
                for name in names:
                    v_detector, v_config = ABLATIONS[name][1](detector, run, config)
                    results[family][name].append(score(run, v_detector, v_config))
                if baselines:
                    for b, pair in run_baselines(baselines, run.train, run.test,
                                                 config).items():
                        results[family][b].append(pair)
                    for j, moved in shifted.items():
                        for b, pair in run_baselines(baselines, run.train, moved.test,
                                                     config).items():
                            results[family][f"{b} @{j}"].append(pair)
                bar.update(1)
    report: dict = {"config_overrides": args.set, "nab_series": args.nab_series,
                    "seconds": round(time.perf_counter() - started), "families": {},
                    "training": training}
    for family, family_runs in runs.items():
        metrics = {d: family_metrics(family_runs, results[family][d])
                   for d in [*detectors, *names]}
        best = max((metrics[b]["auc_pr"] for b in baselines), default=math.nan)
        best_f1 = max((metrics[b]["event_f1"] for b in baselines), default=math.nan)
        ratio = metrics["streamae"]["auc_pr"] / best if best else math.nan
        report["families"][family] = {"metrics": metrics, "auc_pr_vs_best_baseline": ratio,
                                      "best_baseline_event_f1": best_f1}
        print(f"\n## {family} ({metrics['streamae']['series']} labelled series)\n")
        print(table({d: metrics[d] for d in detectors}))
        print(f"\nstreamae AUC-PR / best baseline's: {ratio:.2f}x; event F1 "
              f"{metrics['streamae']['event_f1']:.3f} vs best baseline's {best_f1:.3f}")
    if names:
        print("\n## Ablation: the default with one piece off or swapped\n")
        cols = [f"{f}:{c}" for f in runs for c in ("auc_pr", "event_f1", "alarms_per_event",
                                                   "nab_standard") if c != "nab_standard"
                or f == "nab"]
        rows = {}
        for d in ["streamae", *names]:
            rows[d if d != "streamae" else "default"] = {
                f"{f}:{c}": report["families"][f]["metrics"][d][c]
                for f in runs for c in ("auc_pr", "event_f1", "alarms_per_event",
                                        "nab_standard")}
        print(table(rows, tuple(cols)))
        for name in names:
            print(f"- {name}: {ABLATIONS[name][0]}")
    if offsets:
        report["starts"] = sensitivity(runs, results, offsets, detectors)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(report, indent=2, default=float))
    print(f"\n{report['seconds']} s; figures in {args.out / 'quality.json'}")


def trained(run: Run, config: Config, models: Path | None) -> Detector:
    """The run's default detector: trained now, or loaded from ``models`` when it holds
    one trained with the same settings."""
    if models is None:
        return train_detector(run.train, config)
    from streamae.config import config_to_dict

    settings = {k: config_to_dict(config)[k] for k in ("window", "model", "train", "calibration")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = models / run.family / run.name.replace("/", "_") / digest
    if path.exists():  # the same model, calibrated again by the code at hand
        return calibrated(bounded(Detector.load(path), run.train, config), run.train, config)
    detector = train_detector(run.train, config)
    detector.save(path)
    return detector


def bounded(detector: Detector, frame: Frame, config: Config) -> Detector:
    """A cached model saved before linear codes were bounded, bounded as training bounds
    them now: on the same training windows (the linear member is fitted in closed form
    and frozen before the rest trains, so the bounds change nothing else)."""
    if any(torch.isinf(m.code_low).any() for m in detector.model.modules()
           if isinstance(m, LinearAutoencoder)):
        detector.model.bound(training_windows(
            frame, detector.scaler, detector.window, config.train.stride,
            config.train.max_windows, config.train.val_fraction).train)
    return detector


def score(run: Run, detector: Detector, config: Config) -> tuple[np.ndarray, np.ndarray]:
    result = run_backtest(run.test, detector, config)
    return result.score, result.anomaly


if __name__ == "__main__":
    main()
