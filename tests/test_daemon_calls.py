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
