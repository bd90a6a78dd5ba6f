"""The long-running commands: the scoring daemon, the fleet updater, control commands
to running daemons, and a local broker."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from streamae.cli.options import (Command, config_from_args, field_option, servers_option,
                                  set_threads)
from streamae.errors import StreamaeError


def register(command: Command) -> None:
    for name, help in (
            ("run", "The daemon: consume metric topics, score per-sensor windows, produce "
             "anomaly events; runs until SIGTERM/Ctrl-C, then commits and checkpoints."),
            ("updater", "The fleet's model updater (one process, on the GPU host when there "
             "is one): reads the same input in its own consumer group (GROUP.updater), "
             "fine-tunes on drift and schedule, and announces each accepted version on "
             "daemon.models_topic for every `streamae run` to verify and swap in. Needs "
             "updater.store on a volume the daemons can read and daemon.models_topic set "
             "(the daemons follow the same topic).")):
        p = command(name, help, _run, bars=False)
        p.set_defaults(fleet_updater=name == "updater")
        field_option(p, "--model", field="daemon.model", metavar="MODEL_DIR",
                     help="trained model")
        servers_option(p)
        field_option(p, "--input-topic", field="input.topics", action="append",
                     metavar="TOPIC", help="topic to consume, repeatable")
        field_option(p, "--format", field="input.format", help="input layout",
                     choices=["json", "telegraf", "influx", "prometheus", "alertmanager"])
        if name == "run":  # the updater sends no events
            field_option(p, "--output-topic", field="daemon.output_topic", metavar="TOPIC",
                         help="events")
            field_option(p, "--delivery", field="daemon.delivery", help="delivery guarantee",
                         choices=["at-least-once", "exactly-once"])
        field_option(p, "--group-id", field="daemon.group_id", metavar="GROUP",
                     help="consumer group")
        field_option(p, "--state-dir", field="daemon.state_dir", metavar="DIR",
                     help="checkpoints")
        p.add_argument("--log-format", choices=["text", "json"], default="text",
                       help="log lines as text or one JSON object each")

    p = command("control", "Send a command to running daemons through the control topic: "
                "update (start an update round now), admit (take a key's quarantined "
                "windows as the new normal) or reject (its alarm is a real incident: drop "
                "those windows and neither admit nor re-scale the key while it lasts).",
                _control, bars=False)
    p.add_argument("action", choices=["update", "admit", "reject"],
                   help="update: a round now; admit: quarantined windows become normal; "
                   "reject: the alarm is an incident, never learnt")
    p.add_argument("--key", help="admit/reject: the key (default: every key)")
    servers_option(p)

    p = command("dev-broker", "Run a single-node Kafka broker (KRaft) on 127.0.0.1 in the "
                "foreground until Ctrl-C; fetches the broker jars with Maven on first use.",
                _dev_broker, bars=False)
    p.add_argument("--port", type=int, default=9092, help="client port")
    p.add_argument("--data-dir", metavar="DIR",
                   help="keep topics here across restarts (default: a temporary folder)")


def _run(args: argparse.Namespace) -> int:
    import signal

    from streamae.daemon.fleet import FleetUpdater
    from streamae.daemon.runner import Daemon
    from streamae.models.detector import Detector

    config = config_from_args(args)
    _log_setup(args)
    if not config.daemon.model:
        command = "updater" if args.fleet_updater else "run"
        raise StreamaeError(f"{command} needs a model: --model DIR or daemon.model in the "
                            "config (train one with `streamae train`)")
    set_threads(config)
    detector = Detector.load(config.daemon.model)
    daemon = (FleetUpdater if args.fleet_updater else Daemon)(config, detector)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop())
    daemon.run()
    return 0


def _control(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from streamae.daemon.clients import client_settings
    from streamae.daemon.signing import key_from_env, sign

    config = config_from_args(args)
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
