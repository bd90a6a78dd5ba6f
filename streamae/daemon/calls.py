"""Calls on Kafka clients that must not hang the daemon: bounded waits and the errors a
commit step ends in."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

log = logging.getLogger(__name__)


class DeliveryError(KafkaError):
    """Some events of the interval were not acknowledged; the interval is replayed."""


class CommitTimeout(KafkaError):
    """A commit step did not finish within ``daemon.commit_timeout``."""


def bounded(call: Callable[[], Any], timeout: float, what: str,
            abandon: threading.Event | None = None) -> Any:
    """``call()`` on a helper thread, waited for at most ``timeout`` s (or until ``abandon``
    is set). The client's transactional calls wait without a limit, and after a broker
    restart some never return; the caller then gives the client up."""
    done, box = threading.Event(), {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=f"streamae-{what}", daemon=True).start()
    deadline = time.monotonic() + timeout
    while not done.wait(0.1):
        if time.monotonic() > deadline:
            raise CommitTimeout(f"{what} did not finish within {timeout:g} s "
                                "(daemon.commit_timeout)")
        if abandon is not None and abandon.is_set():
            raise CommitTimeout(f"{what} abandoned: the daemon is stopping")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def close_producer(producer: Any, wait: float) -> None:
    """Close a producer, flushing for at most ``wait`` s. One whose flush does not finish
    (brokers gone, a fenced transaction) is closed without sending what it still holds,
    which nothing counts on (a commit waits for its events first), rather than holding
    the caller or leaving its I/O thread running."""
    try:
        bounded(lambda: producer.close(timeout=wait), wait + 5.0, "producer close")
    except Exception as exc:
        log.warning("producer did not close cleanly (%s); closing it without sending what "
                    "it still holds", exc)
        # kafka-python's close stops its I/O thread only after a flush that succeeded; its
        # sender's force_close drops the pending batches and stops the thread
        sender = getattr(producer, "_sender", None)
        if sender is not None and hasattr(sender, "force_close"):
            sender.force_close()


def retry(call: Callable[[], Any], stopping: threading.Event, what: str,
          errors: tuple[type[BaseException], ...] = (Exception,), first: float = 0.5,
          most: float = 30.0) -> tuple[bool, Any]:
    """``call()`` until it returns, waiting ``first`` s after the first failure and twice
    as long after each next one (at most ``most``), or until ``stopping`` is set:
    ``(True, result)``, or ``(False, None)`` when stopped first. Each failure is logged
    with what was tried."""
    delay = first
    while not stopping.is_set():
        try:
            return True, call()
        except errors as exc:
            log.error("could not %s (%s); retrying in %.1f s", what, exc, delay)
            stopping.wait(delay)
            delay = min(delay * 2.0, most)
    return False, None
