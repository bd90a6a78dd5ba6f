"""The fleet's model updater: one process (on the GPU host when there is one) running the
daemon's loop in its own consumer group over the same input. It scores only to learn
(it sends no events and no dead letters), fine-tunes on drift and schedule, and announces
each version it accepts on ``daemon.models_topic`` for every scoring daemon to verify and
swap in."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from streamae.config import Config
from streamae.daemon import announce
from streamae.daemon.runner import Daemon
from streamae.daemon.updates import updater_config
from streamae.errors import ModelError
from streamae.models.detector import Detector

log = logging.getLogger(__name__)


class FleetUpdater(Daemon):
    """:class:`Daemon` with the updater's config (:func:`updater_config`): its own group
    and state, updates on; a swapped-in version is announced instead of events sent."""

    def __init__(self, config: Config, detector: Detector) -> None:
        super().__init__(updater_config(config), detector)
        self.unannounced: str | None = None

    def _swapped(self, version: str) -> None:
        self.unannounced = version
        self._announce()

    def _every_second(self) -> None:
        if self.unannounced:
            self._announce()

    def _send(self, out: Any, batch: Any, first: int) -> None:
        """Nothing: the scoring daemons send the events of this input."""

    def _announce(self) -> None:
        """Tell the scoring daemons about the version this updater accepted (retried every
        second until the brokers take it)."""
        version = self.unannounced
        try:
            doc = announce.announcement(Path(self.config.updater.store) / "versions" / version)
            announce.publish(self.config.kafka, self.config.daemon.models_topic, doc,
                             self.signing_key)
        except (KafkaError, OSError, ModelError) as exc:
            log.error("could not announce model %s (%s); retrying", version, exc)
            return
        self.unannounced = None
        log.info("announced model %s on %s", version, self.config.daemon.models_topic)
