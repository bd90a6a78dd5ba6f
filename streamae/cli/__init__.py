"""Command line: ``streamae run | updater | control | dev-broker | train | pretrain |
finetune | embed | models | backtest | evaluate | demo | synth | config``.

One module per group of commands (:mod:`service`, :mod:`training`, :mod:`evaluation`,
:mod:`tools`), each registering its commands and holding their handlers; what they share
is in :mod:`options`. Only the CLI prints or draws progress bars; the library logs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable

from streamae import __version__
from streamae.cli import evaluation, service, tools, training
from streamae.cli.options import HelpLayout, config_from_args
from streamae.errors import StreamaeError

__all__ = ["build_parser", "config_from_args", "main"]

EPILOG = """examples:
  streamae demo                                   local broker + synthetic sensors through the daemon
  streamae dev-broker --port 9092                 a single-node Kafka for trying things out
  streamae run --model model/ --input-topic metrics --output-topic anomalies
  streamae train --input history.csv --out model/
  streamae backtest --model model/ --input today.csv --out run/
  streamae backtest --train history.csv --input today.csv --out run/ --baselines pca
  streamae config show > my.yaml                  the default config, every field documented
  streamae config schema > streamae.schema.json   JSON Schema of config files (editors, CI)

Every command takes --config (default: the packaged defaults) [env: STREAMAE_CONFIG]."""


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads spin by default; beside another busy process that slowed torch
    # 100x here. Passive waiting costs nothing when the cores are free.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so a demo's broker and files are cleaned up (`run`
    # installs its own handler: finish the batch, commit, checkpoint)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
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
        "sequence autoencoders.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"streamae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (debug)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, help: str, handler: Callable[[argparse.Namespace], int],
                bars: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=HelpLayout)
        p.set_defaults(handler=handler)
        p.add_argument("--config", default=os.environ.get("STREAMAE_CONFIG"),
                       help="YAML config; absent: packaged defaults [env: STREAMAE_CONFIG]")
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="override one config field, e.g. --set window.hop=4 (repeatable)")
        # also after the command; SUPPRESS keeps `streamae -v run` verbose
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="log what happens (debug)")
        # accepted everywhere (scripts pass it), shown where there are bars to hide
        p.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars" if bars else argparse.SUPPRESS)
        return p

    for room in (service, training, evaluation, tools):
        room.register(command)
    return parser
