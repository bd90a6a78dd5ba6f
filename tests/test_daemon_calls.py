"""Bounded and retried calls: what the daemon does when a client call hangs or fails."""

from __future__ import annotations

import threading

import pytest

from streamae.daemon.calls import CommitTimeout, bounded, close_producer, retry


def test_retry_waits_longer_after_each_failure_until_the_call_succeeds(monkeypatch):
    stopping = threading.Event()
    waits: list[float] = []
    monkeypatch.setattr(stopping, "wait", lambda s: waits.append(s))
    tries = iter([OSError("down"), OSError("still down"), OSError("again"), None])

    def call():
        error = next(tries)
        if error:
            raise error
        return "ready"

    assert retry(call, stopping, "reach the broker", first=0.5, most=1.5) == (True, "ready")
    assert waits == [0.5, 1.0, 1.5]


def test_retry_gives_up_when_the_daemon_stops_and_lets_other_errors_through():
    stopping = threading.Event()

    def failing():
        stopping.set()
        raise OSError("down")

    assert retry(failing, stopping, "reach the broker") == (False, None)
    with pytest.raises(KeyError):
        retry(lambda: {}["x"], threading.Event(), "look up", errors=(OSError,))


def test_bounded_returns_the_result_or_times_out():
    assert bounded(lambda: 42, 5.0, "answer") == 42
    release = threading.Event()
    with pytest.raises(CommitTimeout):
        bounded(lambda: release.wait(10), 0.2, "hang")
    release.set()


class _Sender:
    forced = False

    def force_close(self) -> None:
        self.forced = True


class _Producer:
    """Closes, or fails to flush as a producer whose brokers are gone does."""

    def __init__(self, flushes: bool) -> None:
        self.flushes, self._sender = flushes, _Sender()

    def close(self, timeout: float) -> None:
        if not self.flushes:
            from kafka.errors import KafkaTimeoutError
            raise KafkaTimeoutError("Timeout waiting for future")


def test_a_producer_that_cannot_flush_is_closed_without_sending_what_it_holds():
    stuck, fine = _Producer(flushes=False), _Producer(flushes=True)
    close_producer(stuck, 0.1)
    close_producer(fine, 0.1)
    assert stuck._sender.forced and not fine._sender.forced


def test_the_kafka_client_still_has_the_sender_a_stuck_producer_is_closed_by():
    from kafka import KafkaProducer

    # no broker needed: the version is given, so nothing is asked of the address
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:1", api_version=(2, 6))
    try:
        assert callable(getattr(producer._sender, "force_close", None))
    finally:
        producer.close(timeout=0)


def test_a_send_the_producer_refuses_at_once_fails_the_commit_instead_of_the_daemon():
    """kafka-python raises some errors from send() itself (no metadata for the topic within
    max_block_ms, a record over max_request_size); the interval must then not commit."""
    from types import SimpleNamespace

    from kafka.errors import KafkaTimeoutError

    from streamae.config import Config
    from streamae.daemon.calls import DeliveryError
    from streamae.daemon.commit import Committer
    from streamae.daemon.sink import KafkaSink
    from streamae.io.kafka_records import DeadLetter

    class Producer:
        def send(self, topic, **record):
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")

    class Sink(KafkaSink, Committer):
        def __init__(self):
            self.producer, self.config, self.pending = Producer(), Config(), []
            counter = SimpleNamespace(labels=lambda *_: SimpleNamespace(inc=lambda: None))
            self.metrics = SimpleNamespace(events=counter, dead=counter)

    sink = Sink()
    sink._dead_letter(DeadLetter(b"x", "parse", "parse", "in", 0, 5, 0))
    out = SimpleNamespace(events=[{"key": "k", "status": "open"}], row=[], status=[])
    sink._send(out, SimpleNamespace(dead=[], rejected=lambda *_: []), 0)
    assert len(sink.pending) == 2 and all(f.failed() for f in sink.pending)
    with pytest.raises(DeliveryError, match="2 sends failed"):
        sink._check_sent()


def test_a_model_announcement_that_is_not_a_json_object_is_skipped():
    from types import SimpleNamespace

    from streamae.daemon.announce import Follower

    records = [SimpleNamespace(value=v, offset=i) for i, v in
               enumerate([b"[1, 2]", b"null", b'"text"', b"{bad", b'{"version": "v2"}'])]
    follower = object.__new__(Follower)
    follower.consumer = SimpleNamespace(poll=lambda timeout_ms: {"tp": records})
    assert follower.poll() == [{"version": "v2"}]


def test_commit_failures_in_a_row_never_rotate_away_the_checkpoint_a_restart_needs(tmp_path):
    import numpy as np

    from streamae.daemon.checkpoint import CheckpointStore
    from streamae.pipeline_state import PipelineState

    def state(n):
        return PipelineState({"x": np.full(2, float(n))}, {"n": n})

    store = CheckpointStore(tmp_path, keep=3)
    store.save({("in", 0): 10}, state(1))
    store.confirm()  # its offsets were committed
    for offset in (20, 30, 40, 50):  # saved, then the offset commit failed each time
        store.save({("in", 0): offset}, state(offset))
    assert len(store.checkpoints()) == 4  # the newest three and the committed one
    restarted = CheckpointStore(tmp_path, keep=3)
    cp = restarted.resume_point({("in", 0): 10})
    assert cp is not None and cp.offsets == {("in", 0): 10} and cp.pipeline.meta == {"n": 1}
    restarted.save({("in", 0): 60}, state(60))  # the resumed one stays until confirmed past
    assert any(c.offsets == {("in", 0): 10} for c in restarted.checkpoints())
    restarted.confirm()
    restarted.save({("in", 0): 70}, state(70))
    assert [c.offsets[("in", 0)] for c in restarted.checkpoints()] == [70, 60, 50]


def test_an_evicted_exactly_once_daemon_aborts_the_transaction_holding_lost_partitions():
    from kafka import TopicPartition

    from streamae.config import Config
    from streamae.daemon.commit import Committer
    from streamae.daemon.partitions import Rebalance

    class Producer:
        aborted = 0

        def abort_transaction(self):
            Producer.aborted += 1

    class Evicted(Committer):
        def __init__(self):
            self.config, self.producer, self.stopping = Config(), Producer(), threading.Event()
            self.exactly_once, self.in_transaction, self.dirty = True, True, True
            self.assigned = None

    daemon = Evicted()
    Rebalance(daemon).on_partitions_lost([TopicPartition("in", 0)])
    assert Producer.aborted == 1 and not daemon.in_transaction and not daemon.dirty
    assert daemon.assigned == []
