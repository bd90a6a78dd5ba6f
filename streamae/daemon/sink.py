"""The daemon's Kafka sink: each batch's events to the output topic and its rejected input
to the dead-letter topic, sent and kept pending until the commit waits for them. Part of
:class:`~streamae.daemon.runner.Daemon`."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from kafka.errors import KafkaError
from kafka.future import Future

from streamae.io.kafka_records import DeadLetter

log = logging.getLogger(__name__)
MAX_DEAD_LETTER_BYTES = 900_000  # keep a dead letter under the producer's request limit


class KafkaSink:
    """Sends on the daemon's producer (a mixin: it works on the daemon's own state)."""

    def _send(self, out: Any, batch: Any, first: int) -> None:
        """The batch's events to the output topic and its rejected input to the dead
        letters (sent, not yet acknowledged: the commit waits for them)."""
        for event in out.events:
            self.pending.append(self._send_one(self.config.daemon.output_topic,
                                               value=orjson.dumps(event),
                                               key=event["key"].encode()))
            self.metrics.events.labels(event["status"]).inc()
        for dead in batch.dead + batch.rejected(first, out.row, out.status):
            self._dead_letter(dead)

    def _dead_letter(self, dead: DeadLetter) -> None:
        raw, headers = dead.raw, dead.headers()
        if len(raw) > MAX_DEAD_LETTER_BYTES:
            raw = raw[:MAX_DEAD_LETTER_BYTES]
            headers.append(("streamae.truncated_from", str(len(dead.raw)).encode()))
        self.pending.append(self._send_one(self.config.daemon.dead_letter_topic, value=raw,
                                           headers=headers))
        self.metrics.dead.labels(dead.kind).inc()
        log.debug("dead letter %s[%d]@%d: %s", dead.topic, dead.partition, dead.offset,
                  dead.reason)

    def _send_one(self, topic: str, **record: Any) -> Any:
        """Send one record; an error the producer raises at once (no metadata for the topic
        within max_block_ms, a record over max_request_size) becomes a failed send, which
        fails the interval's commit like a failed delivery instead of stopping the daemon."""
        try:
            return self.producer.send(topic, **record)
        except KafkaError as exc:
            log.error("could not send to %s: %s", topic, exc)
            return Future().failure(exc)
