"""Whole jobs the CLI runs: train a detector, backtest files and write the report."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamae import __version__
from streamae.backtest import BacktestResult, run_backtest, status_counts, write_outputs
from streamae.config import Config, public_dict
from streamae.errors import StreamaeError
from streamae.evaluate.html import git_sha, write_html
from streamae.evaluate.report import HEADLINE, evaluate, markdown_table, run_baselines
from streamae.models.detector import Detector, train_detector
from streamae.models.train import EpochReport
from streamae.types import Frame

log = logging.getLogger(__name__)

Progress = Callable[[str, int], Callable[[int], None]]
"""Factory: (description, total) -> advance(n). The CLI passes progress bars."""


def silent(_desc: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


@dataclass
class BacktestJob:
    """What a backtest run produced."""

    result: BacktestResult
    report: dict[str, Any]
    out_dir: Path


def train(frame: Frame, config: Config, progress: Progress = silent,
          on_epoch: Callable[[EpochReport], None] | None = None) -> Detector:
    """Train a detector with a progress bar over all epochs' windows; its summary (epochs,
    held-out loss, why it stopped) is logged."""
    bar: list[Callable[[int], None]] = []

    def start(windows: int) -> None:
        bar.append(progress("training", windows * config.train.epochs))

    detector = train_detector(frame, config, on_epoch=on_epoch,
                              on_step=lambda n: bar[0](n) if bar else None, on_start=start)
    log.info("model %s (window %d): %s", detector.version, detector.window,
             detector.info["training"]["summary"])
    return detector


def head_mask(frame: Frame, fraction: float) -> np.ndarray:
    """True for the first ``fraction`` of each key's rows in event-time order."""
    mask = np.zeros(len(frame), dtype=bool)
    order = frame.event_time_order()
    keys = frame.keys[order]
    for key in frame.unique_keys():
        rows = order[keys == key]
        mask[rows[: int(math.ceil(len(rows) * fraction))]] = True
    return mask


def backtest(frame: Frame, detector: Detector, config: Config, out_dir: str | Path,
             train_frame: Frame | None = None, eval_mask: np.ndarray | None = None,
             baselines: tuple[str, ...] = (), early: float = 0.0, late: float = 0.0,
             plots: int = 6, progress: Progress = silent,
             point_adjusted: bool = False, sort: bool = True,
             speed: float | None = None, updater: Any = None) -> BacktestJob:
    """Stream ``frame`` through the pipeline (event-time order, or row order when not
    ``sort``); write scores, events and (with labels) the report with metrics, baselines
    and plots."""
    out_dir = Path(out_dir)
    mask = np.ones(len(frame), dtype=bool) if eval_mask is None else eval_mask
    reference = train_frame if train_frame is not None else frame.take(~mask)
    if baselines and frame.labels is not None and len(reference) == 0:
        raise StreamaeError("baselines need training rows: pass --train PATH or "
                            "--train-head F (or leave out --baselines)")
    unordered = out_of_order(frame)
    if unordered and sort:
        log.warning("%d rows are out of time order within their key; replayed in event-time "
                    "order", unordered)
    result = run_backtest(frame, detector, config, on_rows=progress("scoring", len(frame)),
                          sort=sort, speed=speed, updater=updater)
    write_outputs(result, out_dir)
    report: dict[str, Any] = {
        "streamae_version": __version__,
        "model_version": detector.version,
        "rows": len(frame), "keys": len(frame.unique_keys()), "events": len(result.events),
        "row_status": status_counts(result), "point_policy": result.counts,
        "rows_out_of_order": unordered, "replayed_in_event_time": sort,
        "config": public_dict(config), "git_sha": git_sha(),
    }
    if updater is not None:
        report["updates"] = result.updates  # the newest online.HISTORY rounds
        report["update_rounds_run"] = updater.rounds_run
    if frame.labels is not None:
        report["evaluated_rows"] = int(mask.sum())
        report["tolerance_s"] = {"early": early, "late": late}
        detectors = {f"streamae-{detector.model_config.kind}": (result.score, result.anomaly)}
        if baselines:
            for name, pair in run_baselines(list(baselines), reference, frame, config).items():
                detectors[name] = pair
        probation = 0.0 if eval_mask is not None else 0.15
        report["detectors"] = {name: evaluate(frame, s, a, mask, early, late, point_adjusted,
                                              probation)
                               for name, (s, a) in detectors.items()}
    for stale in out_dir.glob("plot_*.png"):  # an earlier run's plots are not this run's
        stale.unlink()
    report["plots"] = _plot(result, out_dir, plots, eval_mask) if plots else []
    if "detectors" in report:
        _write_markdown(report, out_dir)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    write_html(report, result.events, out_dir)
    return BacktestJob(result, report, out_dir)


def out_of_order(frame: Frame) -> int:
    """Rows whose timestamp is older than an earlier row of the same key (input order)."""
    late = 0
    newest: dict[str, float] = {}
    for key, ts in zip(frame.keys, frame.timestamps):
        if ts < newest.get(key, -np.inf):
            late += 1
        else:
            newest[key] = ts
    return late


def summary_table(report: dict[str, Any]) -> str:
    """Macro-averaged headline metrics, one line per detector."""
    return markdown_table({name: r["macro"] for name, r in report.get("detectors", {}).items()})


def _write_markdown(report: dict[str, Any], out_dir: Path) -> None:
    lines = ["# streamae backtest report", "",
             f"streamae {report['streamae_version']}, model {report['model_version']}; "
             f"{report['rows']} rows, {report['keys']} keys, {report['evaluated_rows']} rows "
             f"evaluated, {report['events']} events.", "",
             "## Macro average over keys", "", summary_table(report), "",
             "AUC-PR is average precision of the raw score; event metrics count an alarm as a hit "
             "when it overlaps a labelled segment (tolerance "
             f"early {report['tolerance_s']['early']} s, late {report['tolerance_s']['late']} s); "
             "delays are seconds from segment start to the first alarm inside it. No point "
             "adjustment.", ""]
    for name, res in report["detectors"].items():
        lines += [f"## {name} per key", "", markdown_table(res["per_key"], HEADLINE), ""]
    lines += ["## Plots", ""] + [f"![{Path(name).stem}]({name})" for name in report["plots"]]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")


def _plot(result: BacktestResult, out_dir: Path, limit: int,
          evaluated: np.ndarray | None = None) -> list[str]:
    """Plot the ``limit`` keys with the most labelled (else alarmed) points, each with the
    channels its alarms name most; returns the files written."""
    from streamae.evaluate.plots import plot_key

    frame = result.frame
    order = frame.event_time_order()
    keys = frame.keys[order]
    weight = frame.labels if frame.labels is not None else result.anomaly
    chosen = sorted(frame.unique_keys(), key=lambda k: -int(weight[frame.keys == k].sum()))[:limit]
    written: list[str] = []
    for key in chosen:
        rows = order[keys == key]
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
        plot_key(out_dir / f"plot_{safe}.png", key, frame.timestamps[rows], frame.values[rows],
                 frame.channels, result.score[rows], result.threshold[rows],
                 result.anomaly[rows], None if frame.labels is None else frame.labels[rows],
                 order=_attribution(result.events, key, frame.channels),
                 evaluated=None if evaluated is None else evaluated[rows])
        written.append(f"plot_{safe}.png")
    return written


def _attribution(events: list[dict[str, Any]], key: str, channels: list[str]) -> list[int]:
    """Channel indices by their summed share in the key's events (then in input order)."""
    share = dict.fromkeys(channels, 0.0)
    for event in events:
        if event["key"] == key:
            for item in event["top_channels"]:
                if item["channel"] in share:
                    share[item["channel"]] += item["share"]
    return sorted(range(len(channels)), key=lambda j: (-share[channels[j]], j))


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def evaluate_dataset(kind: str, path: str | Path, config: Config, out_dir: str | Path,
                     baselines: tuple[str, ...] = (), early: float = 0.0, late: float = 0.0,
                     plots: int = 4, progress: Progress = silent, limit: int | None = None,
                     point_adjusted: bool = False,
                     on_run: Callable[[str, dict[str, Any]], None] | None = None
                     ) -> dict[str, Any]:
    """Train and backtest every run of a dataset folder (see
    :mod:`streamae.evaluate.datasets`); macro-average each detector over the runs."""
    from streamae.evaluate.datasets import load
    from streamae.evaluate.report import macro

    out_dir = Path(out_dir)
    runs: dict[str, dict[str, Any]] = {}
    for i, run in enumerate(load(kind, path, series=limit if kind == "nab" else None)):
        if limit is not None and i >= limit:
            break
        if run.train_head is not None:
            head = head_mask(run.test, run.train_head)
            train_frame, mask = run.test.take(head), ~head
        else:
            train_frame, mask = run.train, None
        detector = train(train_frame, config, progress)
        job = backtest(run.test, detector, config, out_dir / run.name, train_frame, mask,
                       baselines, early, late, plots, progress, point_adjusted)
        runs[run.name] = {name: r["macro"] for name, r in job.report["detectors"].items()}
        if on_run:
            on_run(run.name, runs[run.name])
    detectors = next(iter(runs.values())).keys() if runs else []
    summary = {"dataset": kind, "path": str(path), "runs": runs,
               "macro": {d: macro({r: m[d] for r, m in runs.items()}) for d in detectors}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    (out_dir / "summary.md").write_text(
        f"# {kind}: macro average over {len(runs)} run(s)\n\n"
        + markdown_table(summary["macro"]) + "\n")
    return summary
