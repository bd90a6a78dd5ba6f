"""Replay a Kafka topic between two times through the daemon's decode path and pipeline.

Offsets come from the record timestamps (``offsets_for_times``); the consumer has no group
and commits nothing, so live daemons are untouched. Records are decoded exactly as the
daemon decodes them (bad ones counted as dead letters) and scored in arrival order on an
event-time clock, so a replay is reproducible run to run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamae.config import Config
from streamae.daemon.clients import client_settings
from streamae.io.kafka_records import BatchDecoder, DeadLetter
from streamae.errors import StreamaeError
from streamae.formats import build_decoder
from streamae.types import Frame

log = logging.getLogger(__name__)


@dataclass
class TopicSlice:
    """The decoded points of a topic range, in arrival order, and what was rejected."""

    frame: Frame
    records: int
    dead: list[DeadLetter] = field(default_factory=list)

    def dead_counts(self) -> dict[str, int]:
        return dict(Counter(d.kind for d in self.dead))


def read_topic(config: Config, channels: list[str], topic: str, start: float | None = None,
               end: float | None = None, batch: int = 2000,
               on_records: Any = None) -> TopicSlice:
    """Decode every record of ``topic`` with timestamp in ``[start, end)`` (epoch s)."""
    consumer = KafkaConsumer(**client_settings(config.kafka), group_id=None,
                             enable_auto_commit=False, max_poll_records=batch)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise StreamaeError(f"topic {topic!r} does not exist or has no partitions")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        first, stop, held = _range(consumer, tps, start, end)
        if held and all(first[tp] >= stop[tp] for tp in tps):
            # the topic holds records but none found in range: ask once more, since a
            # just-written partition can answer the time lookup before its index has them
            log.warning("no record of %s found between %s and %s (first %s, stop %s); "
                        "asking the broker again", topic, start, end, first, stop)
            time.sleep(1.0)
            first, stop, _ = _range(consumer, tps, start, end)
        for tp in tps:
            consumer.seek(tp, first[tp])
        todo = {tp for tp in tps if first[tp] < stop[tp]}
        decoder = BatchDecoder(build_decoder(config.input, channels, config.data.default_key),
                               channels, config.input.max_message_bytes, config.input.max_future)
        frames, dead, count = [], [], 0
        while todo:
            polled = consumer.poll(timeout_ms=1000)
            if not polled and all(consumer.position(tp) >= stop[tp] for tp in todo):
                break
            records = []
            for tp in sorted(polled, key=lambda t: t.partition):
                records += [r for r in polled[tp] if r.offset < stop[tp]]
                if consumer.position(tp) >= stop[tp]:
                    todo.discard(tp)
                    consumer.pause(tp)
            if records:
                decoded = decoder.decode(records)
                frames.append(decoded.frame)
                dead += decoded.dead
                count += len(records)
                if on_records:
                    on_records(len(records))
    finally:
        consumer.close()
    frame = Frame.concat(frames) if frames else Frame(
        np.empty(0), np.empty(0, dtype=object), np.empty((0, len(channels)), np.float32),
        channels)
    log.info("read %d records of %s (%d dead letters)", count, topic, len(dead))
    return TopicSlice(frame, count, dead)


def _range(consumer: KafkaConsumer, tps: list[TopicPartition], start: float | None,
           end: float | None) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int],
                                       bool]:
    """Per partition, the first offset at or after ``start`` and the one at ``end``; and
    whether any partition holds a record."""
    begin, last = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
    return (_offsets(consumer, tps, start, begin, last), _offsets(consumer, tps, end, last, last),
            any(last[tp] > begin[tp] for tp in tps))


def _offsets(consumer: KafkaConsumer, tps: list[TopicPartition], at: float | None,
             default: dict[TopicPartition, int],
             last: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The first offset at or after time ``at`` (``default`` without one; the end offset
    ``last`` where no record is that new)."""
    if at is None:
        return dict(default)
    found = consumer.offsets_for_times({tp: int(at * 1000) for tp in tps})
    return {tp: found[tp].offset if found.get(tp) is not None else last[tp] for tp in tps}


def publish_events(config: Config, topic: str, events: list[dict[str, Any]]) -> None:
    """Write a replay's events to ``topic`` (for downstream testing), keyed by sensor."""
    import orjson

    producer = KafkaProducer(**client_settings(config.kafka), acks="all")
    for event in events:
        producer.send(topic, key=event["key"].encode(), value=orjson.dumps(event))
    producer.flush()
    producer.close()
