"""Commands that make models: train, pretrain, finetune, embed, and the model store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamae.cli.options import (Command, config_from_args, field_option, progress_bars,
                                  reorder_channels, servers_option, set_threads)
from streamae.errors import StreamaeError


def register(command: Command) -> None:
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
    field_option(p, "--freeze-encoder", field="updater.finetune.freeze_encoder", action="store_true",
                 help="keep the encoder fixed")
    field_option(p, "--freeze-layers", field="updater.finetune.freeze_layers", type=int, metavar="K",
                 help="keep the first K encoder layers fixed")
    field_option(p, "--lr", field="updater.finetune.lr", type=float, help="learning rate")
    field_option(p, "--encoder-lr-scale", field="updater.finetune.encoder_lr_scale", type=float,
                 metavar="S", help="encoder learns S times slower")
    field_option(p, "--epochs", field="updater.finetune.epochs", type=int, help="fine-tuning epochs")

    p = command("embed", "Write the encoder's latent features, one row per scored window "
                "(timestamp, key, z0..), for downstream models.", _embed, bars=False)
    p.add_argument("--model", required=True, metavar="MODEL_DIR",
                   help="a trained model (streamae train --out)")
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="CSV/CSV.GZ/JSONL/Parquet files to embed")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="where the features go: .csv, .csv.gz or .parquet")

    p = command("models", "List the versions in a model store, add a model directory to it, "
                "promote a version to live, or roll back to the previous live version.", _models,
                bars=False)
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


def _train(args: argparse.Namespace) -> int:
    from streamae import jobs
    from streamae.io.files import read_frames

    from streamae.models.detector import check_model_out

    check_model_out(args.out)  # before any work: the destination must be safe to write
    config = config_from_args(args)
    set_threads(config)
    frame = read_frames(args.input, config.data)
    detector = jobs.train(frame, config, progress_bars(args))
    detector.save(args.out)
    print_training(detector, args.out)
    return 0


def print_training(detector, saved_to=None) -> None:
    info = detector.info
    where = f" saved to {saved_to}" if saved_to else ""
    print(f"model {detector.version}{where}: window {detector.window}, {info['windows']} "
          f"windows from {info['rows']} rows / {info['keys']} keys; "
          f"{info['training']['summary']}")


def _finetune(args: argparse.Namespace) -> int:
    from streamae.io.files import read_frames
    from streamae.models.detector import Detector
    from streamae.updater.transfer import finetune_on_frame

    from streamae.models.detector import check_model_out

    check_model_out(args.out)
    config = config_from_args(args)
    set_threads(config)
    pretrained = Detector.load(args.source)
    frame = read_frames(args.input, config.data)
    detector, report = finetune_on_frame(pretrained, frame, config.updater.finetune,
                                         progress=progress_bars(args))
    detector.save(args.out)
    print(f"model {detector.version} (from {pretrained.version}) saved to {args.out}: "
          f"{report.windows} windows, {report.epochs} epochs on {report.device} in "
          f"{report.seconds:.1f} s ({report.stopped}); held-out loss {report.val_loss:.4g}"
          + ("" if report.improved else " (no epoch beat the pretrained weights: kept them, "
             "with the new sensors' scaling)") + f"; groups {report.groups}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from streamae.io.files import read_frames, write_columns
    from streamae.models.detector import Detector
    from streamae.updater.transfer import embed_frame

    config = config_from_args(args)
    set_threads(config)
    detector = Detector.load(args.model)
    frame = reorder_channels(read_frames(args.input, config.data), detector.channels)
    ts, keys, z = embed_frame(detector, frame, config.window.hop)
    columns = {"timestamp": ts, "key": keys.astype(str),
               **{f"z{j}": z[:, j] for j in range(z.shape[1])}}
    out = Path(args.out)
    write_columns(columns, out)
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

        config = config_from_args(args)
        topic = args.announce or config.daemon.models_topic or "streamae.models"
        from streamae.daemon.signing import key_from_env

        doc = announce.announcement(store.root / "versions" / store.current())
        announce.publish(config.kafka, topic, doc, key_from_env(config.daemon.signature_key_env))
        print(f"announced {doc['version']} on {topic} ({doc['path']})")
    return 0
