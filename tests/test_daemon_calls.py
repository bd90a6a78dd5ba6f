"""Bounded and retried calls: what the daemon does when a client call hangs or fails."""

from __future__ import annotations

import threading

import pytest

from streamae.daemon.calls import CommitTimeout, bounded, retry


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
