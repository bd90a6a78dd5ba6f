"""Command line: ``streamae train | backtest | demo | synth | config``.

Only this module prints or draws progress bars; the library logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from streamae import __version__
from streamae.errors import StreamaeError

EPILOG = """examples:
  streamae demo                                   synthetic sensors, train, backtest, report
  streamae train --input history.csv --out model/
  streamae backtest --model model/ --input today.csv --out run/
  streamae backtest --train history.csv --input today.csv --out run/ --baselines pca
  streamae config show > my.yaml                  the default config, every field documented

Every command takes --config (default: the packaged defaults) [env: STREAMAE_CONFIG]."""


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads spin by default; beside another busy process that slowed torch
    # 100x here. Passive waiting costs nothing when the cores are free.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except StreamaeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamae", description="Streaming anomaly detection for sensor telemetry with "
        "sequence autoencoders.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"streamae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (debug)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, help: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(handler=handler)
        p.add_argument("--config", default=os.environ.get("STREAMAE_CONFIG"),
                       help="YAML config; absent: packaged defaults [env: STREAMAE_CONFIG]")
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="override one config field, e.g. --set window.hop=4 (repeatable)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        return p

    p = command("train", "Train an autoencoder on history and save the model directory.", _train)
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="CSV/CSV.GZ/JSONL/Parquet files of normal history")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="where to write the model")

    p = command("backtest", "Stream files through the pipeline in event-time order; write "
                "scores.csv, events.jsonl and report.json (+ report.md and plots with labels).",
                _backtest)
    p.add_argument("--input", nargs="+", required=True, metavar="PATH", help="files to replay")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="MODEL_DIR", help="a trained model")
    src.add_argument("--train", nargs="+", metavar="PATH", help="train on these files first")
    src.add_argument("--train-head", type=float, metavar="FRACTION",
                     help="train on the first FRACTION of each key's rows; evaluate the rest")
    _eval_args(p)

    p = command("demo", "Generate a synthetic sensor set with injected anomalies, train, "
                "backtest, print the events and a report.", _demo)
    p.add_argument("--out", metavar="DIR", help="output directory (default: a temporary one)")
    p.add_argument("--keys", type=int, default=4, help="sensors")
    p.add_argument("--points", type=int, default=6000, help="points per sensor (half for training)")
    p.add_argument("--seed", type=int, default=7, help="generator seed")

    p = command("synth", "Write a seeded synthetic sensor file with labelled anomalies.", _synth)
    p.add_argument("--out", required=True, metavar="FILE", help=".csv or .csv.gz")
    p.add_argument("--keys", type=int, default=3, help="sensors")
    p.add_argument("--channels", type=int, default=4, help="channels per sensor")
    p.add_argument("--points", type=int, default=5000, help="points per sensor")
    p.add_argument("--clean-head", type=int, default=0, help="leading rows free of anomalies")
    p.add_argument("--seed", type=int, default=0, help="generator seed")

    p = command("config", "Show the resolved config, or check a config file.", _config)
    p.add_argument("action", choices=["show", "check"], help="show: print YAML; check: validate")
    return parser


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baselines", default="", metavar="NAMES",
                   help="comma list run beside streamae: rolling-zscore, pca, half-space-trees")
    p.add_argument("--early", default="0s", help="event tolerance before a labelled segment")
    p.add_argument("--late", default="0s", help="event tolerance after a labelled segment")
    p.add_argument("--plots", type=int, default=6, help="keys to plot (0: none)")


def _load(args: argparse.Namespace):
    import yaml

    from streamae.config import load_config

    overrides = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep:
            raise StreamaeError(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[field.strip()] = yaml.safe_load(value)
    return load_config(args.config, overrides)


def _progress(args: argparse.Namespace):
    from tqdm import tqdm

    bars: list = []

    def factory(desc: str, total: int) -> Callable[[int], None]:
        if args.quiet:
            return lambda n: None
        for b in bars:
            b.close()
        bar = tqdm(total=total, desc=desc, unit="win" if desc == "training" else "row",
                   unit_scale=True, leave=False, file=sys.stderr, dynamic_ncols=True)
        bars.append(bar)
        return bar.update

    return factory


def _threads(config) -> None:
    import torch

    torch.set_num_threads(config.scoring.threads)


def _train(args: argparse.Namespace) -> int:
    from streamae import jobs
    from streamae.io.files import read_frames

    config = _load(args)
    _threads(config)
    frame = read_frames(args.input, config.data)
    detector = jobs.train(frame, config, _progress(args))
    detector.save(args.out)
    info = detector.info
    print(f"model {detector.version} saved to {args.out}: {info['windows']} windows from "
          f"{info['rows']} rows / {info['keys']} keys, best epoch {info['best_epoch']} of "
          f"{info['epochs']} (val loss {info['best_val_loss']:.4g})")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from streamae import jobs
    from streamae.durations import parse_duration
    from streamae.io.files import read_frames
    from streamae.models.detector import Detector

    config = _load(args)
    _threads(config)
    progress = _progress(args)
    frame = read_frames(args.input, config.data)
    train_frame, mask = None, None
    if args.model:
        detector = Detector.load(args.model)
        frame = _reorder(frame, detector.channels)
    elif args.train:
        train_frame = read_frames(args.train, config.data)
        detector = jobs.train(train_frame, config, progress)
    elif args.train_head:
        if not 0 < args.train_head < 1:
            raise StreamaeError("--train-head must be a fraction between 0 and 1")
        head = jobs.head_mask(frame, args.train_head)
        train_frame, mask = frame.take(head), ~head
        detector = jobs.train(train_frame, config, progress)
    else:
        raise StreamaeError("backtest needs a model: --model DIR, --train PATH... or --train-head F")
    baselines = tuple(b.strip() for b in args.baselines.split(",") if b.strip())
    job = jobs.backtest(frame, detector, config, args.out, train_frame, mask, baselines,
                        parse_duration(args.early), parse_duration(args.late), args.plots, progress)
    _print_summary(job)
    return 0


def _reorder(frame, channels: list[str]):
    from streamae.types import Frame

    if frame.channels == channels:
        return frame
    missing = sorted(set(channels) - set(frame.channels))
    if missing:
        raise StreamaeError(f"input lacks the model's channel(s) {', '.join(missing)}")
    idx = [frame.channels.index(c) for c in channels]
    return Frame(frame.timestamps, frame.keys, frame.values[:, idx], list(channels), frame.labels)


def _print_summary(job) -> None:
    from streamae import jobs

    r = job.report
    print(f"{r['rows']} rows, {r['keys']} keys -> {r['events']} events "
          f"(model {r['model_version']}); outputs in {job.out_dir}/")
    if "detectors" in r:
        print("\nmacro average over keys (see report.md for per-key figures):")
        print(jobs.summary_table(r))


def _demo(args: argparse.Namespace) -> int:
    from streamae import jobs
    from streamae.io.files import write_frame_csv
    from streamae.synth import generate

    config = _load(args)
    _threads(config)
    out = Path(args.out or tempfile.mkdtemp(prefix="streamae-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    half = args.points // 2
    data = generate(n_points=args.points, keys=args.keys, channels=4, clean_head=half,
                    seed=args.seed)
    head = jobs.head_mask(data.frame, half / args.points)
    train, live = data.frame.take(head), data.frame.take(~head)
    write_frame_csv(train, out / "history.csv.gz", config.data)
    write_frame_csv(live, out / "live.csv.gz", config.data)
    print(f"synthetic set: {args.keys} sensors x 4 channels, {half} history + "
          f"{args.points - half} live points each, {len(data.anomalies)} injected anomalies "
          f"-> {out}/")
    progress = _progress(args)
    detector = jobs.train(train, config, progress)
    detector.save(out / "model")
    job = jobs.backtest(live, detector, config, out / "run", train, None, ("pca",),
                        progress=progress)
    print(f"\nevents ({len(job.result.events)}):")
    for e in job.result.events:
        if e["status"] != "update":
            chans = ", ".join(f"{c['channel']} {c['share']:.0%}" for c in e["top_channels"])
            print(f"  {e['at']}  {e['key']:<9} {e['status']:<8} score {e['score']:9.3g} "
                  f"({e['severity']}; {chans})")
    print()
    _print_summary(job)
    print(f"\nreport: {out / 'run' / 'report.md'}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from streamae.io.files import write_frame_csv
    from streamae.synth import generate

    config = _load(args)
    data = generate(n_points=args.points, keys=args.keys, channels=args.channels,
                    clean_head=args.clean_head, seed=args.seed)
    write_frame_csv(data.frame, args.out, config.data)
    print(f"wrote {len(data.frame)} rows, {len(data.anomalies)} anomalies to {args.out}")
    return 0


def _config(args: argparse.Namespace) -> int:
    import yaml

    from streamae.config import config_to_dict

    config = _load(args)
    if args.action == "check":
        print(f"{args.config or 'packaged defaults'}: ok")
    else:
        print(yaml.safe_dump(json.loads(json.dumps(config_to_dict(config))), sort_keys=False),
              end="")
    return 0
