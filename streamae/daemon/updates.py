"""Online updates inside the daemon: the updater learns from the pipeline on a background
thread, accepted models are swapped in between batches, and operators steer it through
the control topic (``{"command": "update"}``, ``{"command": "admit", "key": K}``).
The replay buffer is checkpointed with the rest of the state, and so is the control
topic's position: a daemon resuming from a checkpoint obeys again the commands that came
after it (their effect was lost with the rest of what followed the checkpoint)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from streamae.config import Config
from streamae.daemon import signing
from streamae.daemon.clients import client_settings
from streamae.errors import ConfigError
from streamae.models.detector import Detector
from streamae.pipeline import Pipeline
from streamae.updater.online import OnlineUpdater, Update
from streamae.updater.store import ModelStore

log = logging.getLogger(__name__)
PREFIX = "updater."
CONTROL_NEXT = "control.next"  # checkpointed: the control topic's next offset to obey
FOLLOWER_WINDOWS = 2048  # windows a follower keeps: normal ones and those from alarms


def updater_config(config: Config) -> Config:
    """The config of the fleet's updater process, derived from the scoring daemons' one:
    its own consumer group and state, updates on, nothing sent but announcements."""
    d, u = config.daemon, config.updater
    missing = [name for name, value in (("updater.store", u.store),
                                        ("daemon.models_topic", d.models_topic)) if not value]
    if missing:
        raise ConfigError(f"the updater process needs {' and '.join(missing)}: a model store "
                          "every daemon can read (shared volume) and the topic announcing "
                          "its versions")
    return dataclasses.replace(
        config, updater=dataclasses.replace(u, enabled=True),
        daemon=dataclasses.replace(d, group_id=f"{d.group_id}.updater", state_topic=None,
                                   delivery="at-least-once",
                                   instance_id=f"{d.instance_id}.updater" if d.instance_id
                                   else None))


def starting_model(config: Config, given: Detector) -> Detector:
    """The store's live version when there is one (a restart goes on with the model the
    updater last accepted), else the given model."""
    if config.updater.enabled and config.updater.store:
        store = ModelStore(config.updater.store)
        if store.current():
            return store.load()
    return given


def follower_config(config: Config) -> Config:
    """What a daemon that follows announced models keeps for its own per-key adaptation
    (re-scaling, threshold re-learning): a small buffer, no drift detector, no rounds."""
    u = config.updater
    return dataclasses.replace(config, updater=dataclasses.replace(
        u, store=None, triggers=dataclasses.replace(u.triggers, drift="none"),
        buffer=dataclasses.replace(u.buffer, scope="global",
                                   recent=min(u.buffer.recent, FOLLOWER_WINDOWS), reservoir=0,
                                   quarantine=min(u.buffer.quarantine, FOLLOWER_WINDOWS))))


class DaemonUpdates:
    def __init__(self, config: Config, live: Detector, key: bytes | None = None,
                 refused: Callable[[str, str, Exception], None] | None = None,
                 follower: bool = False) -> None:
        """``key``: the fleet's signing key (control messages must carry its signature);
        ``refused`` is told of each message refused for its signature. A ``follower``
        scores with the models another process announces: it re-scales keys and re-learns
        their thresholds itself, but trains nothing."""
        if follower:
            config = follower_config(config)
        self.config, self.key, self.refused, self.follower = config, key, refused, follower
        store = ModelStore(config.updater.store) if config.updater.store else None
        if store is not None and not store.holds(live.version):
            store.adopt(live, note="daemon start")
        self.updater = OnlineUpdater(config, live, store, background=True, rounds=not follower)
        self.control: KafkaConsumer | None = None
        self.control_next: int | None = None  # the next control record's offset
        self._control_start: int | None = None  # where control stood when it opened
        self.swaps = 0

    def attach(self, pipeline: Pipeline) -> None:
        self.updater.attach(pipeline)

    def open_control(self) -> None:
        """Follow the control topic from its end (commands are for daemons running now;
        :meth:`restore`, which comes after, may move back to a checkpoint's position)."""
        topic = self.config.daemon.control_topic
        try:
            self.control = KafkaConsumer(**client_settings(self.config.kafka), group_id=None,
                                         enable_auto_commit=False)
            tp = TopicPartition(topic, 0)
            self.control.assign([tp])
            self.control.seek_to_end(tp)
            self.control_next = self.control.position(tp, timeout_ms=10_000)  # None: unknown
            self._control_start = self.control_next
        except Exception as exc:  # no control topic: updates still run on their triggers
            log.warning("control topic %s unavailable (%s); manual triggers disabled", topic, exc)
            self.control = None

    def _replay_control(self, offset: int) -> None:
        """Obey the control commands from ``offset`` on again (a checkpoint's position)."""
        if self.control is None or (self.control_next is not None
                                    and offset >= self.control_next):
            return
        log.info("obeying again the control records after the checkpoint, from offset %d "
                 "(the end: %s)", offset, self.control_next)
        self.control.seek(TopicPartition(self.config.daemon.control_topic, 0), offset)
        self.control_next = offset

    def step(self, pipeline: Pipeline, now: float) -> Update | None:
        """Between batches: obey control commands, then swap in an accepted model or
        re-learn the thresholds of keys with a new normal; returns what was applied."""
        if self.control is not None:
            for records in self.control.poll(timeout_ms=0).values():
                for rec in records:
                    self._command(rec.value, pipeline)
                    self.control_next = rec.offset + 1
        update = self.updater.poll(now)
        if update is not None:
            update.apply(pipeline)
            self.swaps += update.model is not None
        return update

    def _command(self, raw: bytes, pipeline: Pipeline) -> None:
        try:
            doc = json.loads(raw)
            command, key = doc["command"], doc.get("key")
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring malformed control message %r", raw[:200])
            return
        if key is not None and not isinstance(key, str):
            log.warning("ignoring control message %r: key must be a sensor key (text)",
                        raw[:200])
            return
        try:
            signing.check(doc, self.key)
        except signing.SignatureError as exc:
            if self.refused is not None:
                self.refused(self.config.daemon.control_topic, f"control command {command!r}",
                             exc)
            else:
                log.error("refused control command %r: %s", command, exc)
            return
        if command == "update":
            if self.follower:
                log.info("manual update requested: this daemon follows announced models; "
                         "rounds run in the updater process")
                return
            log.info("manual update requested")
            self.updater.request()
        elif command == "admit":
            n = self.updater.admit(key)
            log.info("operator admitted %d quarantined windows of %s as normal", n, key or "all")
            self._note(pipeline, key, "admitted")
        elif command == "reject":
            n = self.updater.reject(key)
            log.info("operator rejected the alarm of %s as an incident: %d quarantined windows "
                     "dropped; not admitted or re-scaled while it lasts", key or "every key", n)
            self._note(pipeline, key, "rejected")
        else:
            log.warning("unknown control command %r", command)

    @staticmethod
    def _note(pipeline: Pipeline, key: str | None, status: str) -> None:
        """The operator's word as an event of each open alarm it concerns, here."""
        for name in [key] if key is not None else list(pipeline.events.open):
            pipeline.note(name, status)

    def state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {PREFIX + k: v for k, v in self.updater.state_dict().items()}
        if self.control_next is not None:
            arrays[CONTROL_NEXT] = np.array([self.control_next], np.int64)
        return arrays

    def restore(self, arrays: dict[str, Any]) -> None:
        """Back to a checkpoint's updater state; the control commands that came after it
        are obeyed again. Without a checkpoint (or one without the position), the state
        starts afresh and so do the commands: every one since control opened."""
        self.updater.load_state_dict({k[len(PREFIX):]: v for k, v in arrays.items()
                                      if k.startswith(PREFIX)})
        if CONTROL_NEXT in arrays:
            self._replay_control(int(np.asarray(arrays[CONTROL_NEXT]).ravel()[0]))
        elif self._control_start is not None:
            self._replay_control(self._control_start)

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
