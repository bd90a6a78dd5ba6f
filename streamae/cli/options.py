"""What the commands share: the help layout, options that set a config field, the
config from the arguments, progress bars, torch threads."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from streamae.errors import StreamaeError

# command(name, help, handler, bars=True): a subcommand with the shared options (-q
# shown only where it draws progress bars)
Command = Callable[..., argparse.ArgumentParser]


class HelpLayout(argparse.HelpFormatter):
    """Shows an option's default only when it says something (not None, False or [],
    and not already in the help text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # identity for None/False: 0 == False, and a default of 0 says something
        if (default is None or default is False or default in ([], "", argparse.SUPPRESS)
                or "default" in text or not action.option_strings):
            return text
        return f"{text} (default: {default})" if text else f"default: {default}"


ENV_SERVERS = "STREAMAE_BOOTSTRAP_SERVERS"


def field_option(p: argparse.ArgumentParser, *flags: str, field: str, env: str | None = None,
                 **kw: Any) -> None:
    """An option that sets one config field: its help names the field (and the environment
    variable it defaults from); ``config_from_args`` applies it beneath any ``--set``."""
    if env:
        kw["default"] = os.environ.get(env)
    if kw.get("action") == "store_true":
        kw["default"] = None  # not given: the config decides
    default = packaged_default(field)
    where = (f"config: {field}" + (f", default {default}" if default not in (None, "") else "")
             + (f"; env: {env}" if env else ""))
    help = kw.pop("help", "")
    action = p.add_argument(*flags, help=f"{help} [{where}]".strip(), **kw)
    p.set_defaults(config_fields={**(p.get_default("config_fields") or {}),
                                  action.dest: field})


@functools.cache
def _packaged() -> dict[str, Any]:
    from streamae.config import Config, config_to_dict

    return config_to_dict(Config())


def packaged_default(field: str) -> Any:
    """The packaged default of a dotted config field, as the config file writes it."""
    value: Any = _packaged()
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, list):
        return ",".join(map(str, value))
    return value


def servers_option(p: argparse.ArgumentParser, purpose: str = "Kafka brokers") -> None:
    field_option(p, "--bootstrap-servers", field="kafka.bootstrap_servers", env=ENV_SERVERS,
                 metavar="HOST:PORT", help=purpose)


def duration_arg(text: str) -> float:
    """argparse type for durations (seconds): refused at parse time with the accepted forms."""
    from streamae.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def evaluation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baselines", default="", metavar="NAMES",
                   help="comma list run beside streamae: pca, isolation-forest, "
                   "rolling-zscore, kmeans, half-space-trees")
    p.add_argument("--early", default="0s", type=duration_arg, metavar="DURATION",
                   help="event tolerance before a labelled segment (e.g. 0s, 5m, 1h)")
    p.add_argument("--late", default="0s", type=duration_arg, metavar="DURATION",
                   help="event tolerance after a labelled segment (e.g. 0s, 5m, 1h)")
    p.add_argument("--plots", type=int, default=6, help="keys to plot (0: none)")
    p.add_argument("--point-adjusted", action="store_true",
                   help="also report point-adjusted F1 (inflated; for comparison with papers)")


def config_from_args(args: argparse.Namespace):
    import yaml

    from streamae.config import load_config

    # options that name a config field first, then every --set on top of them
    overrides = {field: value for dest, field in (getattr(args, "config_fields", None)
                                                 or {}).items()
                 if (value := getattr(args, dest, None)) is not None}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep:
            raise StreamaeError(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[field.strip()] = yaml.safe_load(value)
    return load_config(args.config, overrides)


def progress_bars(args: argparse.Namespace):
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


def set_threads(config) -> None:
    import torch

    torch.set_num_threads(config.scoring.threads)


def reorder_channels(frame, channels: list[str]):
    from streamae.types import Frame

    if frame.channels == channels:
        return frame
    missing = sorted(set(channels) - set(frame.channels))
    if missing:
        raise StreamaeError(f"input lacks the model's channel(s) {', '.join(missing)}")
    idx = [frame.channels.index(c) for c in channels]
    return Frame(frame.timestamps, frame.keys, frame.values[:, idx], list(channels), frame.labels)
