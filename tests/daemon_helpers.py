"""Helpers for the tests that run daemons against the real broker."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest
import yaml

from streamae.config import config_to_dict

STABLE = ("event_id", "alarm_id", "key", "status", "start", "end", "at", "severity",
          "model_version")


def daemon_config(config, kafka, tmp_path, delivery="at-least-once", **daemon):
    topic, out, dlq = kafka.topic("in"), kafka.topic("events"), kafka.topic("dlq")
    return dataclasses.replace(
        config, kafka=kafka.config,
        input=dataclasses.replace(config.input, topics=[topic]),
        daemon=dataclasses.replace(
            config.daemon, group_id=f"g-{topic}", output_topic=out, dead_letter_topic=dlq,
            delivery=delivery, state_dir=str(tmp_path / "state"), commit_every=0.2,
            poll_records=50, http_port=0, **daemon))


def same_events(got, want):
    assert [tuple(e[k] for k in STABLE) for e in got] == [tuple(e[k] for k in STABLE)
                                                          for e in want]
    for g, w in zip(got, want):
        assert g["score"] == pytest.approx(w["score"], rel=1e-4)
        assert g["threshold"] == pytest.approx(w["threshold"], rel=1e-4)


def by_key(events):
    """Events grouped per key, in order (the output topic is ordered per key)."""
    out: dict[str, list] = {}
    for e in events:
        out.setdefault(e["key"], []).append(e)
    return out


def events_of(kafka, topic, read_committed=False):
    return [orjson.loads(r.value) for r in kafka.consume(topic, read_committed)]


def start_process(cfg, model_path, tmp_path, port):
    data = config_to_dict(cfg)
    data["daemon"]["model"] = str(model_path)
    data["daemon"]["http_port"] = port
    path = tmp_path / "daemon.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data))))
    log = open(tmp_path / "daemon.log", "ab")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "streamae", "run", "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_ready(proc, port, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "daemon exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("daemon not ready")


def wait_committed(kafka, cfg, total, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "daemon exited"
        if (kafka.committed(cfg.daemon.group_id, cfg.input.topics[0]) or 0) >= total:
            return
        time.sleep(0.2)
    raise AssertionError("daemon did not commit everything")




def metric(daemon, sample: str, **labels: str) -> float:
    """A daemon's Prometheus sample by the name ``/metrics`` shows it under (a counter's
    ``_total``), summed over the samples whose labels match ``labels``; 0 when none."""
    return sum(s.value for family in daemon.metrics.registry.collect()
               for s in family.samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def wait_for(condition, timeout: float = 60.0, what: str = "a condition") -> float:
    """Poll ``condition`` until it holds; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def scraped(port: int, sample: str) -> float:
    """A daemon process's sample summed over its labels, read from its ``/metrics`` text
    (0 when it has none or the endpoint does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.split("{", 1)[0].split(" ", 1)[0] == sample)
