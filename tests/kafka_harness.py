"""A real Kafka for the tests: the suite's own single-node broker, or the cluster named by
``--bootstrap-servers`` / ``STREAMAE_BOOTSTRAP_SERVERS``. Each test gets fresh topics."""

from __future__ import annotations

import time
import uuid
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamae.broker import DevBroker
from streamae.config import KafkaConfig
from streamae.daemon.clients import ensure_topics


class KafkaHarness:
    def __init__(self, bootstrap_servers: str, broker: DevBroker | None) -> None:
        self.bootstrap_servers, self.broker = bootstrap_servers, broker

    @property
    def config(self) -> KafkaConfig:
        return KafkaConfig(bootstrap_servers=self.bootstrap_servers)

    def topic(self, prefix: str, partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        ensure_topics(self.config, [name], partitions)
        return name

    def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all",
                                 linger_ms=5, max_request_size=2 << 20)
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush()
        producer.close()

    def end_offset(self, topic: str, partition: int = 0) -> int:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers)
        try:
            tp = TopicPartition(topic, partition)
            return consumer.end_offsets([tp])[tp]
        finally:
            consumer.close()

    def committed(self, group: str, topic: str, partition: int = 0) -> int | None:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=group,
                                 enable_auto_commit=False)
        try:
            return consumer.committed(TopicPartition(topic, partition))
        finally:
            consumer.close()

    def consume(self, topic: str, read_committed: bool = False,
                timeout: float = 120.0) -> list[Any]:
        """Every record of ``topic`` up to its end offsets as they stand now (the last
        stable offsets when ``read_committed``); fails rather than return a partial read."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                 enable_auto_commit=False,
                                 isolation_level="read_committed" if read_committed
                                 else "read_uncommitted")
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            partitions = None
            while not partitions and time.monotonic() < deadline:
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    time.sleep(0.2)
            assert partitions, f"topic {topic} has no partitions"
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                assert time.monotonic() < deadline, f"read {len(out)} records of {topic} " \
                    f"before the timeout; end offsets {ends}"
                for records in consumer.poll(timeout_ms=200).values():
                    out += records
        finally:
            consumer.close()
        return out
