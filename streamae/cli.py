"""Command line: ``streamae run | dev-broker | train | backtest | demo | synth | config``.

Only this module prints or draws progress bars; the library logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamae import __version__
from streamae.errors import StreamaeError

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


class _Help(argparse.HelpFormatter):
    """Shows an option's default only when it says something (not None, False or [],
    and not already in the help text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default in (None, False, [], "", argparse.SUPPRESS) or "default" in text
                or not action.option_strings):
            return text
        return f"{text} (default: {default})" if text else f"default: {default}"


ENV_SERVERS = "STREAMAE_BOOTSTRAP_SERVERS"


def field_option(p: argparse.ArgumentParser, *flags: str, field: str, env: str | None = None,
                 **kw: Any) -> None:
    """An option that sets one config field: its help names the field (and the environment
    variable it defaults from); ``_load`` applies it beneath any ``--set``."""
    if env:
        kw["default"] = os.environ.get(env)
    if kw.get("action") == "store_true":
        kw["default"] = None  # not given: the config decides
    where = f"config: {field}" + (f"; env: {env}" if env else "")
    help = kw.pop("help", "")
    action = p.add_argument(*flags, help=f"{help} [{where}]".strip(), **kw)
    p.set_defaults(config_fields={**(p.get_default("config_fields") or {}),
                                  action.dest: field})


def servers_option(p: argparse.ArgumentParser, purpose: str = "Kafka brokers") -> None:
    field_option(p, "--bootstrap-servers", field="kafka.bootstrap_servers", env=ENV_SERVERS,
                 metavar="HOST:PORT", help=purpose)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamae", description="Streaming anomaly detection for sensor telemetry with "
        "sequence autoencoders.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"streamae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (debug)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, help: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Help)
        p.set_defaults(handler=handler)
        p.add_argument("--config", default=os.environ.get("STREAMAE_CONFIG"),
                       help="YAML config; absent: packaged defaults [env: STREAMAE_CONFIG]")
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="override one config field, e.g. --set window.hop=4 (repeatable)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        return p

    for name, help in (
            ("run", "The daemon: consume metric topics, score per-sensor windows, produce "
             "anomaly events; runs until SIGTERM/Ctrl-C, then commits and checkpoints."),
            ("updater", "The fleet's model updater (one process, on the GPU host when there "
             "is one): reads the same input in its own consumer group (GROUP.updater), "
             "fine-tunes on drift and schedule, and announces each accepted version on "
             "daemon.models_topic for every `streamae run` to verify and swap in. Needs "
             "updater.store on a volume the daemons can read.")):
        p = command(name, help, _run)
        p.set_defaults(role="scorer" if name == "run" else "updater")
        field_option(p, "--model", field="daemon.model", metavar="MODEL_DIR",
                     help="trained model")
        servers_option(p)
        field_option(p, "--input-topic", field="input.topics", action="append",
                     metavar="TOPIC", help="topic to consume, repeatable")
        field_option(p, "--format", field="input.format", help="input layout",
                     choices=["json", "telegraf", "influx", "prometheus", "alertmanager"])
        field_option(p, "--output-topic", field="daemon.output_topic", metavar="TOPIC",
                     help="events")
        field_option(p, "--group-id", field="daemon.group_id", metavar="GROUP",
                     help="consumer group")
        field_option(p, "--delivery", field="daemon.delivery", help="delivery guarantee",
                     choices=["at-least-once", "exactly-once"])
        field_option(p, "--state-dir", field="daemon.state_dir", metavar="DIR",
                     help="checkpoints")
        p.add_argument("--log-format", choices=["text", "json"], default="text",
                       help="log lines as text or one JSON object each")

    p = command("control", "Send a command to running daemons through the control topic: "
                "update (start an update round now), admit (take a key's quarantined "
                "windows as the new normal) or reject (its alarm is a real incident: drop "
                "those windows and neither admit nor re-scale the key while it lasts).",
                _control)
    p.add_argument("action", choices=["update", "admit", "reject"],
                   help="update: a round now; admit: quarantined windows become normal; "
                   "reject: the alarm is an incident, never learnt")
    p.add_argument("--key", help="admit/reject: the key (default: every key)")
    servers_option(p)

    p = command("dev-broker", "Run a single-node Kafka broker (KRaft) on 127.0.0.1 in the "
                "foreground until Ctrl-C; fetches the broker jars with Maven on first use.",
                _dev_broker)
    p.add_argument("--port", type=int, default=9092, help="client port")
    p.add_argument("--data-dir", metavar="DIR",
                   help="keep topics here across restarts (default: a temporary folder)")

    p = command("train", "Train an autoencoder on history and save the model directory.", _train)
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="CSV/CSV.GZ/JSONL/Parquet files of normal history")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="where to write the model")

    p = command("pretrain", "Pretrain an autoencoder on a large source set (many sensors); "
                "the starting point for `streamae finetune` and for new keys.", _train)
    p.add_argument("--input", nargs="+", required=True, metavar="PATH", help="source files")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="where to write the model")

    p = command("finetune", "Adapt a pretrained model to a new sensor set (transfer "
                "learning): new scaling, frozen or slower encoder layers, a small learning "
                "rate.", _finetune)
    p.add_argument("--from", dest="source", required=True, metavar="MODEL_DIR",
                   help="pretrained model")
    p.add_argument("--input", nargs="+", required=True, metavar="PATH", help="new sensors' data")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="where to write the result")
    field_option(p, "--freeze-encoder", field="updater.freeze_encoder", action="store_true",
                 help="keep the encoder fixed")
    field_option(p, "--freeze-layers", field="updater.freeze_layers", type=int, metavar="K",
                 help="keep the first K encoder layers fixed")
    field_option(p, "--lr", field="updater.lr", type=float, help="learning rate")
    field_option(p, "--encoder-lr-scale", field="updater.encoder_lr_scale", type=float,
                 metavar="S", help="encoder learns S times slower")
    field_option(p, "--epochs", field="updater.epochs", type=int, help="fine-tuning epochs")

    p = command("embed", "Write the encoder's latent features, one row per scored window "
                "(timestamp, key, z0..), for downstream models.", _embed)
    p.add_argument("--model", required=True, metavar="MODEL_DIR",
                   help="a trained model (streamae train --out)")
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="CSV/CSV.GZ/JSONL/Parquet files to embed")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="where the features go: .csv, .csv.gz or .parquet")

    p = command("models", "List the versions in a model store, add a model directory to it, "
                "promote a version to live, or roll back to the previous live version.", _models)
    p.add_argument("action", choices=["list", "add", "promote", "rollback"],
                   help="list versions, add a model directory, promote VERSION to live, or "
                   "roll back to the previous live version")
    p.add_argument("version", nargs="?",
                   help="add: a model directory; promote: the version to make live")
    p.add_argument("--store", required=True, metavar="DIR", help="model store directory")
    p.add_argument("--announce", nargs="?", const="", metavar="TOPIC",
                   help="promote/rollback: announce the new live version to running daemons "
                   "on TOPIC [default: config daemon.models_topic, else streamae.models]")
    servers_option(p, "with --announce")

    p = command("backtest", "Stream files through the pipeline in event-time order; write "
                "scores.csv, events.jsonl and report.json (+ report.md and plots with labels).",
                _backtest)
    p.add_argument("--input", nargs="+", metavar="PATH", help="files to replay")
    p.add_argument("--kafka-topic", metavar="TOPIC",
                   help="replay this topic instead of files (no consumer group, no commits), "
                   "decoded as the daemon decodes it [config: input.format]")
    p.add_argument("--from", dest="start", metavar="TIME",
                   help="with --kafka-topic: first record time (ISO 8601 or epoch s)")
    p.add_argument("--to", dest="end", metavar="TIME",
                   help="with --kafka-topic: end of the range, exclusive")
    servers_option(p, "with --kafka-topic")
    p.add_argument("--speed", type=float, metavar="X",
                   help="replay at X times event time (default: as fast as possible)")
    p.add_argument("--events-topic", metavar="TOPIC", help="also write the events to this topic")
    p.add_argument("--online", action="store_true",
                   help="run the online updater on event time (replay buffer, triggers, "
                   "fine-tuning, gate, swaps) as the daemon would [config: updater]")
    p.add_argument("--store", metavar="DIR", help="with --online: keep accepted versions here")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="MODEL_DIR", help="a trained model")
    src.add_argument("--train", nargs="+", metavar="PATH", help="train on these files first")
    src.add_argument("--train-head", type=float, metavar="FRACTION",
                     help="train on the first FRACTION of each key's rows; evaluate the rest")
    _eval_args(p)

    p = command("evaluate", "Evaluate streamae and baselines on a public dataset folder "
                "(NAB, SMD, SMAP, MSL, UCR layouts): train, backtest, report per run, and a "
                "macro average over runs.", _evaluate)
    p.add_argument("--dataset", required=True, choices=["nab", "smd", "smap", "msl", "ucr"],
                   help="layout of --path: nab (folders of timestamp,value[,label] CSVs, or "
                   "combined_windows.json), smd (<machine>_train/_test.csv.gz, or train/ test/ "
                   "test_label/ text files), smap | msl (train/ and test/ .npy with "
                   "labeled_anomalies.csv), ucr (NNN_UCR_Anomaly_<name>_<trainEnd>_<begin>_"
                   "<end>.txt)")
    p.add_argument("--path", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--limit", type=int, metavar="N",
                   help="only the first N runs (NAB, one run of many series: its first N series)")
    _eval_args(p)

    p = command("demo", "Generate a synthetic sensor set with injected anomalies, train on its "
                "history, start a local Kafka broker, stream the rest through the daemon and "
                "print the events and a summary (--offline: a file backtest instead).", _demo)
    p.add_argument("--out", metavar="DIR", help="output directory (default: a temporary one)")
    p.add_argument("--offline", action="store_true",
                   help="no broker: backtest the files and write a report with plots")
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

    p = command("config", "Show the resolved config, check a config file, or print the "
                "JSON Schema config files follow (for editors and CI).", _config)
    p.add_argument("action", choices=["show", "check", "schema"],
                   help="show: print YAML; check: validate; schema: print the JSON Schema")
    return parser


def _duration_arg(text: str) -> float:
    """argparse type for durations (seconds): refused at parse time with the accepted forms."""
    from streamae.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baselines", default="", metavar="NAMES",
                   help="comma list run beside streamae: pca, isolation-forest, "
                   "rolling-zscore, kmeans, half-space-trees")
    p.add_argument("--early", default="0s", type=_duration_arg, metavar="DURATION",
                   help="event tolerance before a labelled segment (e.g. 0s, 5m, 1h)")
    p.add_argument("--late", default="0s", type=_duration_arg, metavar="DURATION",
                   help="event tolerance after a labelled segment (e.g. 0s, 5m, 1h)")
    p.add_argument("--plots", type=int, default=6, help="keys to plot (0: none)")
    p.add_argument("--point-adjusted", action="store_true",
                   help="also report point-adjusted F1 (inflated; for comparison with papers)")


def _load(args: argparse.Namespace):
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

    from streamae.models.detector import check_model_out

    check_model_out(args.out)  # before any work: the destination must be safe to write
    config = _load(args)
    _threads(config)
    frame = read_frames(args.input, config.data)
    detector = jobs.train(frame, config, _progress(args))
    detector.save(args.out)
    _print_training(detector, args.out)
    return 0


def _print_training(detector, saved_to=None) -> None:
    info = detector.info
    where = f" saved to {saved_to}" if saved_to else ""
    print(f"model {detector.version}{where}: window {detector.window}, {info['windows']} "
          f"windows from {info['rows']} rows / {info['keys']} keys; "
          f"{info['training']['summary']}")


def _backtest(args: argparse.Namespace) -> int:
    from streamae import jobs
    from streamae.io.files import read_frames
    from streamae.models.detector import Detector

    if bool(args.input) == bool(args.kafka_topic):
        raise StreamaeError("backtest replays either files (--input PATH...) or a topic "
                            "(--kafka-topic T), not both or neither")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise StreamaeError(f"--out {args.out} is an existing file; backtest writes a folder "
                            "of outputs: choose a folder name")
    config = _load(args)
    _threads(config)
    progress = _progress(args)
    baselines = _baselines(args)
    if args.kafka_topic:
        return _backtest_topic(args, config, progress)
    frame = read_frames(args.input, config.data)
    train_frame, mask = None, None
    if args.model:
        detector = Detector.load(args.model)
        frame = _reorder(frame, detector.channels)
    elif args.train:
        train_frame = read_frames(args.train, config.data)
        detector = jobs.train(train_frame, config, progress)
        _print_training(detector)
    elif args.train_head:
        if not 0 < args.train_head < 1:
            raise StreamaeError("--train-head must be a fraction between 0 and 1")
        head = jobs.head_mask(frame, args.train_head)
        train_frame, mask = frame.take(head), ~head
        detector = jobs.train(train_frame, config, progress)
        _print_training(detector)
    else:
        raise StreamaeError("backtest needs a model: --model DIR, --train PATH... or --train-head F")
    job = jobs.backtest(frame, detector, config, args.out, train_frame, mask, baselines,
                        args.early, args.late, args.plots, progress,
                        args.point_adjusted, updater=_updater(args, config, detector))
    for r in job.report.get("updates", []):
        print(f"update round at {r['at']:.0f} ({r['reason']}): "
              + (f"accepted {r['candidate']}" if r["accepted"] else
                 f"rejected: {'; '.join(r['reasons'])}"))
    _print_summary(job)
    return 0


def _baselines(args: argparse.Namespace) -> tuple[str, ...]:
    """The --baselines names, checked before any work starts."""
    from streamae.evaluate.report import check_baselines

    names = tuple(b.strip() for b in args.baselines.split(",") if b.strip())
    try:
        check_baselines(list(names))
    except ValueError as exc:
        raise StreamaeError(str(exc)) from None
    return names


def _updater(args: argparse.Namespace, config, detector):
    if not args.online:
        return None
    from streamae.updater.online import OnlineUpdater
    from streamae.updater.store import ModelStore

    store = None
    if args.store:
        store = ModelStore(args.store)
        if detector.version not in {v["version"] for v in store.versions()}:
            store.add(detector, note="initial")
        store.promote(detector.version)
    return OnlineUpdater(config, detector, store)


def _backtest_topic(args: argparse.Namespace, config, progress) -> int:
    from streamae import jobs
    from streamae.formats.base import parse_time
    from streamae.io.files import read_frames
    from streamae.models.detector import Detector
    from streamae.replay import publish_events, read_topic

    if args.model:
        detector = Detector.load(args.model)
    elif args.train:
        detector = jobs.train(read_frames(args.train, config.data), config, progress)
    else:
        raise StreamaeError("a topic replay needs --model DIR or --train PATH...")
    start = parse_time(args.start, field="--from") if args.start else None
    end = parse_time(args.end, field="--to") if args.end else None
    topic = read_topic(config, detector.channels, args.kafka_topic, start, end,
                       on_records=progress("reading", 0))
    if not len(topic.frame):
        raise StreamaeError(f"no decodable records in {args.kafka_topic} in that range")
    job = jobs.backtest(topic.frame, detector, config, args.out, plots=0, progress=progress,
                        sort=False, speed=args.speed, updater=_updater(args, config, detector))
    if args.events_topic:
        publish_events(config, args.events_topic, job.result.events)
    print(f"{topic.records} records of {args.kafka_topic} -> {len(topic.frame)} points "
          f"({topic.dead_counts() or 'no'} rejected), {len(job.result.events)} events; "
          f"outputs in {args.out}/")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from streamae.io.files import read_frames
    from streamae.models.detector import Detector
    from streamae.updater.transfer import finetune_on_frame

    from streamae.models.detector import check_model_out

    check_model_out(args.out)
    config = _load(args)
    _threads(config)
    pretrained = Detector.load(args.source)
    frame = read_frames(args.input, config.data)
    detector, report = finetune_on_frame(pretrained, frame, config.updater)
    detector.save(args.out)
    print(f"model {detector.version} (from {pretrained.version}) saved to {args.out}: "
          f"{report.windows} windows, {report.epochs} epochs on {report.device} in "
          f"{report.seconds:.1f} s ({report.stopped}); held-out loss {report.val_loss:.4g}"
          + ("" if report.improved else " (no epoch beat the pretrained weights: kept them, "
             "with the new sensors' scaling)") + f"; groups {report.groups}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from streamae.io.files import read_frames
    from streamae.models.detector import Detector
    from streamae.updater.transfer import embed_frame

    config = _load(args)
    _threads(config)
    detector = Detector.load(args.model)
    frame = _reorder(read_frames(args.input, config.data), detector.channels)
    ts, keys, z = embed_frame(detector, frame, config.window.hop)
    columns = {"timestamp": ts, "key": keys.astype(str),
               **{f"z{j}": z[:, j] for j in range(z.shape[1])}}
    out = Path(args.out)
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(columns), out)
    else:
        import csv
        import gzip

        opener = gzip.open if out.suffix == ".gz" else open
        with opener(out, "wt", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(list(columns))
            for i in range(len(ts)):
                writer.writerow([f"{ts[i]:.3f}", keys[i], *np.round(z[i], 6).tolist()])
    print(f"{len(ts)} windows x {z.shape[1]} features -> {out}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from streamae.updater.store import ModelStore

    store = ModelStore(args.store)
    if args.action == "list":
        for v in store.versions():
            print(f"{'*' if v['live'] else ' '} {v['version']:<24} parent {v['parent'] or '-':<24} "
                  f"{v['created']}  {v['note']}  {json.dumps(v['metrics'])}")
        if not store.versions():
            print(f"no versions in {args.store}")
    elif args.action == "add":
        from streamae.models.detector import Detector

        if not args.version:
            raise StreamaeError("add needs a MODEL_DIR")
        detector = Detector.load(args.version)
        print(f"added {store.add(detector, parent=detector.info.get('parent'), note=args.version)}")
    elif args.action == "promote":
        if not args.version:
            raise StreamaeError("promote needs a VERSION (see `streamae models list`)")
        store.promote(args.version)
        print(f"{args.version} is live")
    else:
        print(f"rolled back: {store.rollback()} is live")
    if args.announce is not None and args.action in ("promote", "rollback"):
        from streamae.daemon import announce

        config = _load(args)
        topic = args.announce or config.daemon.models_topic or "streamae.models"
        from streamae.daemon.signing import key_from_env

        doc = announce.announcement(store.root / "versions" / store.current())
        announce.publish(config.kafka, topic, doc, key_from_env(config.daemon.signature_key_env))
        print(f"announced {doc['version']} on {topic} ({doc['path']})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from streamae import jobs
    from streamae.evaluate.report import markdown_table

    config = _load(args)
    _threads(config)
    baselines = _baselines(args)

    def done(name: str, metrics: dict) -> None:
        print(f"\n{name}:\n{markdown_table(metrics)}", flush=True)

    summary = jobs.evaluate_dataset(args.dataset, args.path, config, args.out, baselines,
                                    args.early, args.late,
                                    args.plots, _progress(args), args.limit, args.point_adjusted,
                                    done)
    print(f"\n{args.dataset}: macro average over {len(summary['runs'])} run(s) "
          f"({args.out}/summary.md):\n{markdown_table(summary['macro'])}")
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


def _run(args: argparse.Namespace) -> int:
    import signal

    from streamae.daemon.runner import Daemon
    from streamae.models.detector import Detector

    config = _load(args)
    _log_setup(args)
    if not config.daemon.model:
        raise StreamaeError("run needs a model: --model DIR or daemon.model in the config "
                            "(train one with `streamae train`)")
    _threads(config)
    detector = Detector.load(config.daemon.model)
    daemon = Daemon(config, detector, role=args.role)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop())
    daemon.run()
    return 0


def _control(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from streamae.daemon.clients import client_settings
    from streamae.daemon.signing import key_from_env, sign

    config = _load(args)
    command = sign({"command": args.action, **({"key": args.key} if args.key else {})},
                   key_from_env(config.daemon.signature_key_env))
    producer = KafkaProducer(**client_settings(config.kafka), acks="all")
    producer.send(config.daemon.control_topic, json.dumps(command).encode()).get(30)
    producer.close()
    shown = {k: v for k, v in command.items() if k != "signature"}
    print(f"sent {shown}{' (signed)' if 'signature' in command else ''} to "
          f"{config.daemon.control_topic}")
    return 0


def _log_setup(args: argparse.Namespace) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    # kafka-python logs every failed connection attempt (dozens a minute while brokers are
    # away); the daemon says what matters in its own lines: the client's only with -v
    logging.getLogger("kafka").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    if args.log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(_JsonLog())


class _JsonLog(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": self.formatTime(record), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def _dev_broker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from streamae.broker import DevBroker, kafka_version

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"starting Kafka {kafka_version()} (KRaft, single node)...", file=sys.stderr)
    with DevBroker(port=args.port, data_dir=args.data_dir) as broker:
        print(f"bootstrap servers: {broker.bootstrap_servers}", flush=True)
        print(f"data: {broker.data_dir} (log: {broker.log_file}); Ctrl-C stops",
              file=sys.stderr)
        while not stop.wait(0.5):
            if broker.process is None or broker.process.poll() is not None:
                raise StreamaeError(f"the broker exited; see {broker.log_file}")
    print("broker stopped", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streamae import jobs
    from streamae.io.files import write_frame_csv
    from streamae.synth import generate

    config = _load(args)
    _threads(config)
    out = Path(args.out or tempfile.mkdtemp(prefix="streamae-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    if not args.offline:
        from streamae.demo import run_live_demo

        run_live_demo(config, out, args.keys, args.points, args.seed, print, _progress(args))
        return 0
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
    print(f"\nreport: {out / 'run' / 'report.html'} (also report.md)")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from streamae.io.files import write_frame_csv
    from streamae.synth import generate

    parent = Path(args.out).parent
    if not parent.is_dir():
        raise StreamaeError(f"--out {args.out}: folder {parent} does not exist; create it "
                            "first or choose another path")
    config = _load(args)
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
    config = _load(args)
    if args.action == "check":
        print(f"{args.config or 'packaged defaults'}: ok")
    else:
        print(commented_yaml(config), end="")
    return 0
