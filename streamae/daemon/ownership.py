"""Which input partition each key arrives on: a key's state moves with its partition."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
Partition = tuple[str, int]


class KeyOwners:
    """Key -> input partition, and the partitions that moved on since their last snapshot."""

    def __init__(self, owners: dict[str, Partition] | None = None) -> None:
        self.of: dict[str, Partition] = dict(owners or {})
        self.changed: set[Partition] = set()

    def note(self, polled: dict[Any, list[Any]], message: np.ndarray, keys: np.ndarray) -> None:
        """Record the keys of one decoded poll: ``polled`` maps TopicPartitions to their
        records (in the order they were decoded), ``message`` gives each row's record
        index and ``keys`` each row's key."""
        tps = list(polled)
        if len(tps) == 1:
            groups = [(tps[0], keys)]
        else:
            bounds = np.cumsum([len(recs) for recs in polled.values()])
            which = np.searchsorted(bounds, message, side="right")
            groups = [(tp, keys[which == j]) for j, tp in enumerate(tps)]
        for tp, part in groups:
            where = (tp.topic, tp.partition)
            self.changed.add(where)
            for key in set(part.tolist()):
                was = self.of.get(key)
                if was != where:
                    if was is not None:
                        log.warning("key %r arrives on %s[%d] after %s[%d]: its state now "
                                    "moves with the newer partition", key, *where, *was)
                    self.of[key] = where

    def keys_in(self, partitions: set[Partition]) -> dict[Partition, list[str]]:
        out: dict[Partition, list[str]] = {p: [] for p in partitions}
        for key, p in self.of.items():
            if p in out:
                out[p].append(key)
        return out

    def drop(self, partitions: set[Partition]) -> list[str]:
        """Forget the partitions' keys; returns them."""
        keys = [k for k, p in self.of.items() if p in partitions]
        for key in keys:
            del self.of[key]
        self.changed -= partitions
        return keys

    def take(self, keys: list[str], partition: Partition) -> None:
        self.of.update(dict.fromkeys(keys, partition))
