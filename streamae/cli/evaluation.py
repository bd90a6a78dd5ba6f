"""Commands that replay and measure: backtest (files or a topic) and evaluate (a public
dataset folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.options import (Command, config_from_args, evaluation_options, progress_bars,
                                  reorder_channels, servers_option, set_threads)
from streamae.cli.training import print_training
from streamae.errors import StreamaeError


def register(command: Command) -> None:
    p = command("backtest", "Stream files (or a Kafka topic's time range) through the "
                "daemon's pipeline in event-time order; write scores.csv, events.jsonl and "
                "report.json (+ report.md, report.html and plots with labels).",
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
    evaluation_options(p)

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
    evaluation_options(p)


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
    config = config_from_args(args)
    set_threads(config)
    progress = progress_bars(args)
    baselines = _baselines(args)
    if args.kafka_topic:
        return _backtest_topic(args, config, progress)
    frame = read_frames(args.input, config.data)
    train_frame, mask = None, None
    if args.model:
        detector = Detector.load(args.model)
        frame = reorder_channels(frame, detector.channels)
    elif args.train:
        train_frame = read_frames(args.train, config.data)
        detector = jobs.train(train_frame, config, progress)
        print_training(detector)
    elif args.train_head:
        if not 0 < args.train_head < 1:
            raise StreamaeError("--train-head must be a fraction between 0 and 1")
        head = jobs.head_mask(frame, args.train_head)
        train_frame, mask = frame.take(head), ~head
        detector = jobs.train(train_frame, config, progress)
        print_training(detector)
    else:
        raise StreamaeError("backtest needs a model: --model DIR, --train PATH... or --train-head F")
    job = jobs.backtest(frame, detector, config, args.out, train_frame, mask, baselines,
                        args.early, args.late, args.plots, progress,
                        args.point_adjusted, updater=_updater(args, config, detector))
    shown, run = job.report.get("updates", []), job.report.get("update_rounds_run", 0)
    if run > len(shown):
        print(f"{run} update rounds run; the newest {len(shown)}:")
    for r in shown:
        print(f"update round at {r['at']:.0f} ({r['reason']}): "
              + (f"accepted {r['candidate']}" if r["accepted"] else
                 f"rejected: {'; '.join(r['reasons'])}"))
    print_summary(job)
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
        store.adopt(detector, note="initial")
    return OnlineUpdater(config, detector, store)


def _backtest_topic(args: argparse.Namespace, config, progress) -> int:
    from streamae import jobs
    from streamae.formats.base import parse_time
    from streamae.io.files import read_frames
    from streamae.models.detector import Detector
    from streamae.io.topic_range import publish_events, read_topic

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


def _evaluate(args: argparse.Namespace) -> int:
    from streamae import jobs
    from streamae.evaluate.report import markdown_table

    config = config_from_args(args)
    set_threads(config)
    baselines = _baselines(args)

    def done(name: str, metrics: dict) -> None:
        print(f"\n{name}:\n{markdown_table(metrics)}", flush=True)

    summary = jobs.evaluate_dataset(args.dataset, args.path, config, args.out, baselines,
                                    args.early, args.late,
                                    args.plots, progress_bars(args), args.limit, args.point_adjusted,
                                    done)
    print(f"\n{args.dataset}: macro average over {len(summary['runs'])} run(s) "
          f"({args.out}/summary.md):\n{markdown_table(summary['macro'])}")
    return 0


def print_summary(job) -> None:
    from streamae import jobs

    r = job.report
    print(f"{r['rows']} rows, {r['keys']} keys -> {r['events']} events "
          f"(model {r['model_version']}); outputs in {job.out_dir}/")
    if "detectors" in r:
        print("\nmacro average over keys (see report.md for per-key figures):")
        print(jobs.summary_table(r))
