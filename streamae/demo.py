"""The quick-start job: a local broker, a synthetic sensor set with injected anomalies
streamed through the daemon, its events printed as they arrive, a summary at the end."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streamae import jobs
from streamae.broker import DevBroker, free_port, kafka_version
from streamae.config import Config
from streamae.daemon import clients
from streamae.daemon.runner import Daemon
from streamae.evaluate.metrics import segments
from streamae.synth import generate
from streamae.types import Frame

Say = Callable[[str], None]


def frame_messages(frame: Frame) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs in the default JSON layout, one message per row."""
    out = []
    multi = len(frame.channels) > 1
    for ts, key, row in zip(frame.timestamps, frame.keys, frame.values):
        doc: dict[str, Any] = {"timestamp": float(ts), "key": str(key)}
        if multi:
            doc["values"] = dict(zip(frame.channels, map(float, row)))
        else:
            doc["value"] = float(row[0])
        out.append((str(key).encode(), orjson.dumps(doc)))
    return out


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def detection_summary(frame: Frame, events: list[dict[str, Any]], lead: float,
                      tolerance: float) -> dict[str, int]:
    """Labelled segments hit by an alarm (opened within the segment, up to ``lead``
    seconds before it or up to ``tolerance`` seconds after it) and alarms that hit none."""
    opens = [(e["key"], np.datetime64(e["start"].rstrip("Z"), "ms").astype(float) / 1000)
             for e in events if e["status"] == "open"]
    spans = []
    for key in frame.unique_keys():
        sel = frame.keys == key
        ts, labels = frame.timestamps[sel], frame.labels[sel]
        spans += [(key, ts[a] - lead, ts[b - 1] + tolerance) for a, b in segments(labels)]
    hit = {i for i, (k, a, b) in enumerate(spans) for key, t in opens if key == k and a <= t <= b}
    false = sum(1 for key, t in opens if not any(k == key and a <= t <= b for k, a, b in spans))
    return {"segments": len(spans), "detected": len(hit), "alarms": len(opens),
            "false_alarms": false}


def detection_span(config: Config, frame: Frame) -> tuple[float, float]:
    """Seconds an alarm may open before its anomaly starts and after it ends and still be
    the one it caused. Before: a point is scored with the window that closes up to a hop
    after it, which the autoencoders read whole. After: a hop of scoring, the score's
    smoothing and the hits needed to open."""
    key = frame.unique_keys()[0]
    step = float(np.median(np.diff(np.sort(frame.timestamps[frame.keys == key]))))
    hop = config.window.hop
    return ((hop - 1) * step,
            (hop + config.calibration.smooth + config.alarm.hit_window) * step)


def run_live_demo(config: Config, out: Path, keys: int, points: int, seed: int, say: Say,
                  progress: jobs.Progress = jobs.silent) -> dict[str, int]:
    for leftover in ("broker", "state"):  # an earlier run's topics and offsets: start clean
        shutil.rmtree(out / leftover, ignore_errors=True)
    history, live = _synthetic_set(keys, points, seed, say)
    detector = jobs.train(history, config, progress)
    detector.save(out / "model")
    say(f"model {detector.version} trained on the history -> {out / 'model'}")
    with DevBroker(port=free_port(), data_dir=out / "broker") as broker:
        say(f"Kafka {kafka_version()} broker (KRaft) on {broker.bootstrap_servers}")
        d = config.daemon
        config = dataclasses.replace(
            config, kafka=dataclasses.replace(config.kafka,
                                              bootstrap_servers=broker.bootstrap_servers),
            daemon=dataclasses.replace(d, state_dir=str(out / "state"), http_port=0))
        topic = config.input.topics[0]
        clients.ensure_topics(config.kafka, [topic, d.output_topic, d.dead_letter_topic])
        produce(broker.bootstrap_servers, topic, frame_messages(live.take(live.event_time_order())))
        say(f"streamed {len(live)} points to topic {topic}; daemon running, events on "
            f"{d.output_topic}:\n")
        daemon = Daemon(config, detector)
        thread = threading.Thread(target=daemon.run, name="streamae-daemon")
        thread.start()
        try:
            events = _follow(config, daemon, thread, len(live), say)
        finally:
            daemon.stop()
            thread.join()
    summary = detection_summary(live, events, *detection_span(config, live))
    say(f"\n{len(live)} points scored, {len(events)} events. {found(summary)}")
    return summary


def found(summary: dict[str, int]) -> str:
    """The detection summary in a sentence."""
    return (f"Injected anomalies detected: {summary['detected']}/{summary['segments']}; "
            f"alarms with no injected anomaly: {summary['false_alarms']} of "
            f"{summary['alarms']}.")


def _follow(config: Config, daemon: Daemon, thread: threading.Thread, total: int, say: Say,
            quiet_for: float = 3.0, timeout: float = 600.0) -> list[dict[str, Any]]:
    """Print events as they arrive until the daemon has read every point and gone quiet."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(config.daemon.output_topic,
                             bootstrap_servers=config.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             group_id=None)
    events: list[dict[str, Any]] = []
    last_news = time.monotonic()
    deadline = last_news + timeout
    try:
        while time.monotonic() < deadline and thread.is_alive():
            for records in consumer.poll(timeout_ms=200).values():
                for rec in records:
                    event = orjson.loads(rec.value)
                    events.append(event)
                    last_news = time.monotonic()
                    if event["status"] != "update":
                        say(format_event(event))
            done = sum(daemon.positions.values()) >= total and not daemon.dirty
            if done and time.monotonic() - last_news > quiet_for:
                break
    finally:
        consumer.close()
    return events


def format_event(e: dict[str, Any]) -> str:
    chans = ", ".join(f"{c['channel']} {c['share']:.0%}" for c in e["top_channels"])
    return (f"  {e['at']}  {e['key']:<9} {e['status']:<8} score {e['score']:9.3g} "
            f"({e['severity']}; {chans})")


def run_offline_demo(config: Config, out: Path, keys: int, points: int, seed: int, say: Say,
                     progress: jobs.Progress = jobs.silent) -> dict[str, int]:
    """The demo without a broker: the synthetic set's live half backtested from files, with
    PCA beside streamae and a report with plots in ``out/run``."""
    from streamae.io.files import write_frame_csv

    history, live = _synthetic_set(keys, points, seed, say)
    write_frame_csv(history, out / "history.csv.gz", config.data)
    write_frame_csv(live, out / "live.csv.gz", config.data)
    detector = jobs.train(history, config, progress)
    detector.save(out / "model")
    job = jobs.backtest(live, detector, config, out / "run", history, None, ("pca",),
                        progress=progress)
    events = job.result.events
    say(f"\nevents ({len(events)}):")
    for e in events:
        if e["status"] != "update":
            say(format_event(e))
    r = job.report
    say(f"\n{r['rows']} rows, {r['keys']} keys -> {r['events']} events "
        f"(model {r['model_version']}); outputs in {job.out_dir}/")
    say("\nmacro average over keys (see report.md for per-key figures):")
    say(jobs.summary_table(r))
    summary = detection_summary(live, events, *detection_span(config, live))
    say(f"\n{found(summary)}")
    say(f"report: {out / 'run' / 'report.html'} (also report.md)")
    return summary


def _synthetic_set(keys: int, points: int, seed: int, say: Say) -> tuple[Frame, Frame]:
    """The demo's seeded sensors: a clean history half and a live half with anomalies."""
    half = points // 2
    data = generate(n_points=points, keys=keys, channels=4, clean_head=half, seed=seed)
    head = jobs.head_mask(data.frame, half / points)
    say(f"synthetic set: {keys} sensors x 4 channels, {half} history + {points - half} live "
        f"points each, {len(data.anomalies)} injected anomalies")
    return data.frame.take(head), data.frame.take(~head)
