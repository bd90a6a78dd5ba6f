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

SMALL = {"window.size": 16, "window.hop": 4, "train.epochs": 8, "train.batch_size": 32,
         "train.max_windows": 1500,
         "threshold.init_points": 50, "model.hidden": 16, "model.latent": 4}
SMALL_TRANSFORMER = {**{k: v for k, v in SMALL.items() if not k.startswith("model.")},
                     "model.kind": "transformer", "model.d_model": 16, "model.heads": 2,
                     "model.layers": 1, "model.ff": 32, "model.latent": 4}


def small_config(kind: str = "lstm", **extra) -> Config:
    base = SMALL if kind == "lstm" else SMALL_TRANSFORMER
    return load_config(overrides={**base, **extra})


@pytest.fixture(scope="session")
def synthetic() -> Frame:
    # 200 points a day, so that training on the first half sees every phase of the cycle
    return generate(n_points=1200, keys=2, channels=3, step_s=432.0, clean_head=600, seed=11,
                    anomaly_kinds=("spike", "level_shift", "variance_burst")).frame


@pytest.fixture(scope="session")
def train_frame(synthetic: Frame) -> Frame:
    return synthetic.take(synthetic.timestamps < np.median(synthetic.timestamps))


@pytest.fixture(scope="session", params=["lstm", "transformer"])
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
