"""Model distribution on a real broker: a version announced on the models topic (with its
files' checksums) reaches every running daemon; a tampered one is refused and the daemons
keep the model they have."""

from __future__ import annotations

import dataclasses
import time

import pytest

from streamae.cli import main
from streamae.config import with_overrides
from streamae.daemon import announce
from streamae.daemon.fleet import FleetUpdater
from streamae.demo import frame_messages
from streamae.models.detector import train_detector
from streamae.updater.store import ModelStore
from conftest import QUICK_ROUNDS
from daemon_helpers import daemon_config, metric, wait_for
from test_daemon_kafka import InProcess, live, model  # noqa: F401

pytestmark = pytest.mark.kafka


def store_with_newer(detector, train_frame, config, root, seed):
    """A model store whose live version is ``detector``, holding a newer one (trained with
    ``seed``) that is not promoted yet; returns the store and the newer model."""
    store = ModelStore(root)
    store.add(detector)
    store.promote(detector.version)
    newer = train_detector(train_frame, dataclasses.replace(
        config, train=dataclasses.replace(config.train, seed=seed)))
    store.add(newer, parent=detector.version)
    return store, newer


def test_announced_model_reaches_every_daemon_and_a_tampered_one_is_refused(
        kafka, model, live, train_frame, tmp_path, capsys):
    detector, _, config = model
    store, newer = store_with_newer(detector, train_frame, config, tmp_path / "store", 7)
    topic = kafka.topic("models")
    runs = []
    for i in range(2):
        cfg = daemon_config(config, kafka, tmp_path / f"d{i}", models_topic=topic)
        kafka.produce(cfg.input.topics[0], frame_messages(live)[:300])
        runs.append(InProcess(cfg, detector))
    try:
        for run in runs:
            run.wait_consumed(300)
        assert main(["models", "promote", newer.version, "--store", str(store.root),
                     "--announce", topic, "--bootstrap-servers", kafka.bootstrap_servers]) == 0
        assert f"announced {newer.version}" in capsys.readouterr().out
        took = wait_for(lambda: all(r.daemon.pipeline.detector.version == newer.version
                                    for r in runs))
        print(f"announced model picked up by both daemons in {took:.2f} s")
        for run in runs:
            assert run.thread.is_alive()
            assert metric(run.daemon, "streamae_model_info", version=newer.version) == 1

        # a third version, changed on disk after it was announced
        third = train_detector(train_frame, dataclasses.replace(
            config, train=dataclasses.replace(config.train, seed=8)))
        store.add(third, parent=newer.version)
        path = store.root / "versions" / third.version
        doc = announce.announcement(path)
        weights = path / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
        announce.publish(kafka.config, topic, doc)
        wait_for(lambda: all(metric(r.daemon, "streamae_models_refused_total") == 1
                            for r in runs))
        for run in runs:
            assert run.daemon.pipeline.detector.version == newer.version
            assert run.thread.is_alive()
    finally:
        for run in runs:
            run.stop()


def test_a_model_announced_before_a_daemon_starts_is_adopted_at_start(
        kafka, model, live, train_frame, tmp_path, caplog):
    detector, path, config = model
    newer = train_detector(train_frame, dataclasses.replace(
        config, train=dataclasses.replace(config.train, seed=9)))
    newer.save(tmp_path / "newer")
    topic = kafka.topic("models")
    announce.publish(kafka.config, topic, announce.announcement(tmp_path / "newer"))
    cfg = daemon_config(config, kafka, tmp_path / "d", models_topic=topic)
    messages = frame_messages(live)
    kafka.produce(cfg.input.topics[0], messages[:100])
    run = InProcess(cfg, detector)
    try:
        run.wait_consumed(100)
        assert run.daemon.pipeline.detector.version == newer.version
    finally:
        run.stop()
    # restarted on the model it was launched with, it resumes the state it checkpointed
    # under the announced one, thresholds included
    caplog.clear()
    kafka.produce(cfg.input.topics[0], messages[100:200])
    again = InProcess(cfg, detector)
    try:
        again.wait_consumed(200)
        assert again.daemon.pipeline.detector.version == newer.version
        assert "thresholds start again" not in caplog.text
    finally:
        again.stop()


def test_the_updater_process_announces_what_it_accepts_to_every_daemon(
        kafka, model, live, tmp_path):
    # the fleet layout: two scoring daemons share the input; the updater reads it too, in
    # its own group, sends no events, and announces each version it accepts
    from kafka import KafkaProducer

    from streamae.daemon.updates import updater_config
    from streamae.errors import ConfigError

    detector, _, config = model
    cfg = daemon_config(config, kafka, tmp_path, models_topic=kafka.topic("models"))
    topic = kafka.topic("in2", partitions=2)
    cfg = dataclasses.replace(
        cfg, input=dataclasses.replace(cfg.input, topics=[topic]),
        daemon=dataclasses.replace(cfg.daemon, control_topic=kafka.topic("control")))
    with pytest.raises(ConfigError, match="updater.store"):
        updater_config(cfg)
    fleet_cfg = with_overrides(cfg, {  # the gate passes all: this is about announcing
        **QUICK_ROUNDS, "updater.store": str(tmp_path / "store"),
        "updater.gate.incident_keep": 0.0})
    messages = frame_messages(live)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    for key, value in messages[:600]:
        producer.send(topic, key=key, value=value, partition=int(key == b"sensor-1"))
    producer.flush()
    scorers = [InProcess(dataclasses.replace(cfg, daemon=dataclasses.replace(
        cfg.daemon, state_dir=str(tmp_path / f"s{i}"))), detector) for i in range(2)]
    updater = InProcess(dataclasses.replace(fleet_cfg, daemon=dataclasses.replace(
        fleet_cfg.daemon, state_dir=str(tmp_path / "u"))), detector, kind=FleetUpdater)
    try:
        updater.wait_consumed(600)
        producer.send(cfg.daemon.control_topic, b'{"command": "update"}').get(10)
        store = ModelStore(tmp_path / "store")
        sent, deadline = 600, time.monotonic() + 120
        while store.current() == detector.version:  # batches flow: updates act between them
            assert time.monotonic() < deadline, "the updater accepted no version"
            for key, value in messages[sent: sent + 20]:
                producer.send(topic, key=key, value=value, partition=int(key == b"sensor-1"))
            producer.flush()
            sent += 20
            time.sleep(0.2)
        accepted = store.current()
        took = wait_for(lambda: all(s.daemon.pipeline.detector.version == accepted
                                    for s in scorers))
        print(f"version accepted by the updater process reached both daemons in {took:.2f} s")
        assert updater.daemon.config.daemon.group_id == cfg.daemon.group_id + ".updater"
        assert metric(updater.daemon, "streamae_events_produced_total") == 0
        # scorers follow: they adapt their keys (re-scaling, thresholds) but train nothing
        assert all(s.daemon.updates.follower and not s.daemon.updates.updater.trains
                   and not s.daemon.updates.updater.rounds for s in scorers)
    finally:
        producer.close()
        for run in [*scorers, updater]:
            run.stop()


def test_with_signing_on_a_forged_or_unsigned_announcement_is_refused(
        kafka, model, live, train_frame, tmp_path, monkeypatch, capsys):
    """``daemon.signature_key_env`` set: an announcement signed with another key, or not at
    all, is refused and counted; one that ``models promote --announce`` signs with the
    fleet's key is swapped in."""
    detector, _, config = model
    monkeypatch.setenv("STREAMAE_TEST_KEY", "fleet-secret")
    store, newer = store_with_newer(detector, train_frame, config, tmp_path / "store", 11)
    topic = kafka.topic("models")
    cfg = daemon_config(config, kafka, tmp_path / "d", models_topic=topic,
                        signature_key_env="STREAMAE_TEST_KEY")
    kafka.produce(cfg.input.topics[0], frame_messages(live)[:200])
    run = InProcess(cfg, detector)

    def refused():
        return metric(run.daemon, "streamae_signed_messages_refused_total", topic=topic)

    try:
        run.wait_consumed(200)
        doc = announce.announcement(store.root / "versions" / newer.version)
        announce.publish(kafka.config, topic, doc)  # unsigned
        wait_for(lambda: refused() == 1)
        announce.publish(kafka.config, topic, doc, key=b"a guess")  # forged
        wait_for(lambda: refused() == 2)
        assert run.daemon.pipeline.detector.version == detector.version
        yaml_cfg = tmp_path / "signed.yaml"
        yaml_cfg.write_text("daemon:\n  signature_key_env: STREAMAE_TEST_KEY\n")
        assert main(["models", "promote", newer.version, "--store", str(store.root),
                     "--announce", topic, "--bootstrap-servers", kafka.bootstrap_servers,
                     "--config", str(yaml_cfg)]) == 0
        wait_for(lambda: run.daemon.pipeline.detector.version == newer.version)
        assert refused() == 2 and run.thread.is_alive()
    finally:
        run.stop()
