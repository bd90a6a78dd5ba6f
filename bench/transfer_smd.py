"""Transfer learning on SMD: pretrain on two machines, adapt to the third with 5%, 10% and
25% of its training data, and compare with training from scratch on the same share.

    python bench/transfer_smd.py [--data ../shared/data/smd] [--fractions 0.05,0.1,0.25]
                                 [--targets all] [--epochs 30] [--out runs/transfer-smd]

For every target machine: one model is pretrained on the other machines' training parts
(each machine a key). Then, per share of the target's training part (its oldest rows):

* scratch       trained on the share only, with the pretraining recipe;
* pretrained    the pretrained weights as they are, scaling learnt from the share;
* frozen enc.   fine-tuned with the encoder frozen (the encoder as feature extractor);
* full          fine-tuned end to end, encoder at ``encoder_lr_scale`` x the learning rate.

Each model streams the target's test part through the pipeline (event time, as a
backtest); AUC-PR and event F1 are read off its scores and alarms. Training and
fine-tuning use CUDA when present.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from streamae.backtest import run_backtest
from streamae.config import load_config
from streamae.evaluate.datasets import load
from streamae.evaluate.report import evaluate
from streamae.models.dataset import training_windows
from streamae.models.detector import Detector, train_detector
from streamae.models.scaler import Scaler
from streamae.types import Frame
from streamae.updater.transfer import finetune_on_frame

VARIANTS = ("scratch", "pretrained", "frozen enc.", "full")


def head(frame: Frame, share: float) -> Frame:
    """The oldest ``share`` of the rows (a new sensor's first days)."""
    order = frame.event_time_order()
    return frame.take(np.sort(order[: max(1, int(len(order) * share))]))


def rescaled(pretrained: Detector, frame: Frame) -> Detector:
    """The pretrained weights as they are, with the new sensor's scaling and calibration
    (each key's newest fifth held out)."""
    scaler = Scaler.fit(frame, pretrained.scaler.clip)
    split = training_windows(frame, scaler, pretrained.window, val_fraction=0.2)
    adapted = dataclasses.replace(pretrained, scaler=scaler, channels=list(frame.channels),
                                  info=dict(pretrained.info))
    return adapted.recalibrated(split.val, split.val_keys) if len(split.val) else adapted


def score(detector: Detector, test: Frame, config) -> dict[str, float]:
    result = run_backtest(test, detector, config)
    macro = evaluate(test, result.score, result.anomaly, np.ones(len(test), bool),
                     nab_probation=0.0)["macro"]
    return {"auc_pr": macro["auc_pr"], "event_f1": macro["event_f1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/smd")
    parser.add_argument("--fractions", default="0.05,0.1,0.25")
    parser.add_argument("--targets", default="all", help="machines to adapt to (comma list)")
    parser.add_argument("--epochs", type=int, default=30, help="pretraining/scratch epochs")
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--out", default="runs/transfer-smd")
    args = parser.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    config = load_config(overrides={"train.epochs": args.epochs})
    tune = dataclasses.replace(config.updater.finetune, epochs=args.finetune_epochs,
                               lr=args.finetune_lr, time_budget=3600.0)
    runs = {run.name: run for run in load("smd", args.data)}
    targets = list(runs) if args.targets == "all" else args.targets.split(",")
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for target in targets:
        start = time.perf_counter()
        sources = [runs[m].train for m in runs if m != target]
        source = Frame.concat(sources)
        pretrained = train_detector(source, config)
        print(f"\n{target}: pretrained on {', '.join(m for m in runs if m != target)} "
              f"({len(source)} rows) in {time.perf_counter() - start:.0f} s", flush=True)
        test = runs[target].test
        results[target] = {}
        for share in fractions:
            part = head(runs[target].train, share)
            row: dict[str, dict[str, float]] = {}
            row["scratch"] = score(train_detector(part, config), test, config)
            row["pretrained"] = score(rescaled(pretrained, part), test, config)
            for name, freeze in (("frozen enc.", True), ("full", False)):
                cfg = dataclasses.replace(tune, freeze_encoder=freeze)
                adapted, _ = finetune_on_frame(pretrained, part, cfg)
                row[name] = score(adapted, test, config)
            results[target][f"{share:.0%}"] = row
            print(f"  {share:>4.0%} ({len(part):>5} rows)  " + "  ".join(
                f"{v}: {row[v]['auc_pr']:.3f}/{row[v]['event_f1']:.3f}" for v in VARIANTS),
                flush=True)
        full = score(train_detector(runs[target].train, config), test, config)
        results[target]["100% scratch"] = {"scratch": full}
        print(f"  100% scratch: {full['auc_pr']:.3f}/{full['event_f1']:.3f}", flush=True)
    print_tables(results, fractions)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(results, indent=2))


def print_tables(results, fractions) -> None:
    for metric in ("auc_pr", "event_f1"):
        print(f"\n{metric} on the target's test part (AUC-PR and event F1: higher is better)")
        print(f"| target | share | {' | '.join(VARIANTS)} |")
        print("|---|---|" + "---|" * len(VARIANTS))
        for target, rows in results.items():
            for share in fractions:
                row = rows[f"{share:.0%}"]
                print(f"| {target} | {share:.0%} | "
                      + " | ".join(f"{row[v][metric]:.3f}" for v in VARIANTS) + " |")
            print(f"| {target} | 100% | {rows['100% scratch']['scratch'][metric]:.3f} |"
                  + " |" * (len(VARIANTS) - 1))
        means = [np.nanmean([results[t][f"{s:.0%}"][v][metric] for t in results
                             for s in fractions]) for v in VARIANTS]
        print("| mean | all | " + " | ".join(f"{m:.3f}" for m in means) + " |")


if __name__ == "__main__":
    main()
