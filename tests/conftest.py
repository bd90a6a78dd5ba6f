"""Shared fixtures: a small synthetic set and a quickly trained detector per model kind."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kafka_harness import KafkaHarness
from streamae.broker import DevBroker, free_port
from streamae.config import Config, load_config
from streamae.models.detector import Detector, train_detector
from streamae.synth import generate
from streamae.types import Frame

BASE = {"window.size": 16, "window.hop": 4, "train.epochs": 8, "train.batch_size": 32,
        "train.max_windows": 1500, "calibration.smooth": 4, "threshold.init_points": 50,
        "alarm.suppress": 0}  # spans in points are sized for full windows, not W=16
MODELS = {
    "lstm": {"kind": "lstm", "hidden": 16, "latent": 4},
    "transformer": {"kind": "transformer", "d_model": 16, "heads": 2, "layers": 1, "ff": 32,
                    "latent": 4},
    "linear": {"kind": "linear", "components": 8},
}
MODELS["ensemble"] = {"kind": "ensemble", "members": [MODELS["lstm"], MODELS["linear"]]}
SMALL = {**BASE, **{f"model.{k}": v for k, v in MODELS["lstm"].items()}}


# updater rounds that start as soon as the buffer holds 20 windows, train one epoch on the
# CPU and pass the gate: for tests about what happens around a round, not its quality
QUICK_ROUNDS = {"updater.triggers.min_windows": 20, "updater.triggers.cooldown": 0.0,
                "updater.triggers.drift": "none", "updater.finetune.epochs": 1,
                "updater.finetune.device": "cpu", "updater.gate.tolerance": 1.0,
                "updater.gate.alarm_rate": 1.0, "updater.relearn.admit_after": 0.0}


def small_config(kind: str = "lstm", **extra) -> Config:
    """A config that trains in seconds; ``extra`` dotted fields override (``model.*``
    fields apply to the chosen kind)."""
    model = dict(MODELS[kind])
    for dotted in [k for k in extra if k.startswith("model.")]:
        model[dotted[len("model."):]] = extra.pop(dotted)
    return load_config(overrides={**BASE, "model": model, **extra})


@pytest.fixture(scope="session")
def synthetic() -> Frame:
    # 200 points a day, so that training on the first half sees every phase of the cycle
    return generate(n_points=1200, keys=2, channels=3, step_s=432.0, clean_head=600, seed=11,
                    anomaly_kinds=("spike", "level_shift", "variance_burst")).frame


@pytest.fixture(scope="session")
def train_frame(synthetic: Frame) -> Frame:
    return synthetic.take(synthetic.timestamps < np.median(synthetic.timestamps))


@pytest.fixture(scope="session", params=["lstm", "transformer", "linear", "ensemble"])
def trained(request, train_frame: Frame) -> tuple[Detector, Config]:
    config = small_config(request.param)
    return train_detector(train_frame, config), config


def pytest_addoption(parser):
    parser.addoption("--bootstrap-servers", default=os.environ.get("STREAMAE_BOOTSTRAP_SERVERS"),
                     help="run the Kafka tests against this cluster instead of the suite's own "
                     "broker [env: STREAMAE_BOOTSTRAP_SERVERS]")


@pytest.fixture(scope="session")
def kafka(request, tmp_path_factory) -> KafkaHarness:
    """A real broker: started once per session (Java + Maven), or an external cluster."""
    external = request.config.getoption("--bootstrap-servers")
    if external:
        yield KafkaHarness(external, None)
        return
    broker = DevBroker(port=free_port(), data_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield KafkaHarness(broker.bootstrap_servers, broker)
    finally:
        broker.close()
