"""The daemon's Kafka clients against a real broker: a group join the client library
drops is restarted, so commits go through again."""

from __future__ import annotations

import time

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import RebalanceInProgressError
from kafka.structs import MemberState

from streamae.config import DaemonConfig
from streamae.daemon import clients

pytestmark = pytest.mark.kafka


def joined(consumer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not consumer.assignment() or consumer._coordinator.rebalance_in_progress():
        assert time.monotonic() < deadline, "the consumer never joined its group"
        consumer.poll(timeout_ms=200)


def test_a_join_left_unfinished_by_the_client_is_restarted_and_commits_resume(kafka):
    topic = kafka.topic("join")
    kafka.produce(topic, [(b"k", b"{}")] * 5)
    group = f"g-{topic}"
    consumer = clients.consumer(kafka.config, DaemonConfig(group_id=group), False)
    consumer.subscribe([topic])
    try:
        joined(consumer)
        assert not clients.resume_stalled_join(consumer), "a stable member is left alone"
        offsets = {TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)}
        # what the client leaves behind when a finished join is never taken up
        consumer._coordinator.state = MemberState.REBALANCING
        consumer._coordinator._join_task = None
        with pytest.raises(RebalanceInProgressError):
            consumer.commit(offsets)
        assert clients.resume_stalled_join(consumer)
        joined(consumer)
        consumer.commit(offsets)
        assert kafka.committed(group, topic) == 3
    finally:
        consumer.close(autocommit=False)
