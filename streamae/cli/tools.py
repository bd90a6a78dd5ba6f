"""Commands for trying things out: the demo, synthetic data, the config."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from streamae.cli.options import Command, config_from_args, progress_bars, set_threads
from streamae.errors import StreamaeError


def register(command: Command) -> None:
    p = command("demo", "Generate a synthetic sensor set with injected anomalies, train on its "
                "history, start a local Kafka broker, stream the rest through the daemon and "
                "print the events and a summary (--offline: a file backtest instead).", _demo)
    p.add_argument("--out", metavar="DIR", help="output directory (default: a temporary one)")
    p.add_argument("--offline", action="store_true",
                   help="no broker: backtest the files and write a report with plots")
    p.add_argument("--keys", type=int, default=4, help="sensors")
    p.add_argument("--points", type=int, default=6000, help="points per sensor (half for training)")
    p.add_argument("--seed", type=int, default=7, help="generator seed")

    p = command("synth", "Write a seeded synthetic sensor file with labelled anomalies.", _synth,
                bars=False)
    p.add_argument("--out", required=True, metavar="FILE", help=".csv or .csv.gz")
    p.add_argument("--keys", type=int, default=3, help="sensors")
    p.add_argument("--channels", type=int, default=4, help="channels per sensor")
    p.add_argument("--points", type=int, default=5000, help="points per sensor")
    p.add_argument("--clean-head", type=int, default=0, help="leading rows free of anomalies")
    p.add_argument("--seed", type=int, default=0, help="generator seed")

    p = command("config", "Show the resolved config, check a config file, or print the "
                "JSON Schema config files follow (for editors and CI).", _config, bars=False)
    p.add_argument("action", choices=["show", "check", "schema"],
                   help="show: print YAML; check: validate; schema: print the JSON Schema")
    p.add_argument("file", nargs="?", help="show/check: this config file (as --config)")


def _demo(args: argparse.Namespace) -> int:
    from streamae.demo import run_live_demo, run_offline_demo

    config = config_from_args(args)
    set_threads(config)
    out = Path(args.out or tempfile.mkdtemp(prefix="streamae-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    run = run_offline_demo if args.offline else run_live_demo
    run(config, out, args.keys, args.points, args.seed, print, progress_bars(args))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from streamae.io.files import write_frame_csv
    from streamae.synth import generate

    parent = Path(args.out).parent
    if not parent.is_dir():
        raise StreamaeError(f"--out {args.out}: folder {parent} does not exist; create it "
                            "first or choose another path")
    config = config_from_args(args)
    data = generate(n_points=args.points, keys=args.keys, channels=args.channels,
                    clean_head=args.clean_head, seed=args.seed)
    write_frame_csv(data.frame, args.out, config.data)
    print(f"wrote {len(data.frame)} rows, {len(data.anomalies)} anomalies to {args.out}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from streamae.config import commented_yaml, config_schema

    if args.action == "schema":
        print(json.dumps(config_schema(), indent=2))
        return 0
    if args.file:
        args.config = args.file
    config = config_from_args(args)
    if args.action == "check":
        given = f" with {len(args.set)} --set override(s)" if args.set else ""
        print(f"{args.config or 'packaged defaults'}{given}: ok")
    else:
        print(commented_yaml(config), end="")
    return 0
