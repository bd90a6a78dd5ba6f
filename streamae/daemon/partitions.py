"""Partitions coming and going: what a daemon does when the group gives it partitions
(restore from its checkpoint or the state topic, take keys over, seek) and when it takes
them away (hand the state over first). Part of :class:`~streamae.daemon.runner.Daemon`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from streamae.daemon.state_topic import Partition, Snapshot
from streamae.daemon.checkpoint import Offsets
from streamae.daemon.ownership import KeyOwners
from streamae.errors import InputFormatError

if TYPE_CHECKING:
    from streamae.daemon.runner import Daemon

log = logging.getLogger(__name__)


class Partitions:
    """The daemon's partition handling (a mixin: it works on the daemon's own state)."""

    def _on_assigned(self, assigned: list[TopicPartition]) -> set[Partition]:
        """After a rebalance: partitions kept carry on with the state in memory (the
        consumer is moved back to where it stands, since a rejoin may reset it to the
        committed offsets); partitions given up are forgotten; partitions received take
        their keys' state from the state topic. Returns every assigned partition: records
        already fetched for them are stale."""
        current = {(tp.topic, tp.partition) for tp in assigned}
        if not self.restored:
            self.restore(assigned)
        else:
            gone, new = self.owned - current, current - self.owned
            if gone:
                self._release(gone)
            if new:
                self._receive(new, self._committed(tp for tp in assigned
                                                   if (tp.topic, tp.partition) in new))
            if not gone and not new:
                log.info("rebalance kept this daemon's partitions; state carries on at %s",
                         {tp: self.positions.get(tp) for tp in current})
            self._seek_to_state(assigned)
        self.owned = current
        return current

    def _committed(self, assigned: Any) -> Offsets:
        committed = {}
        for tp in assigned:
            offset = self.consumer.committed(tp)
            if offset is not None:
                committed[(tp.topic, tp.partition)] = offset
        return committed

    def restore(self, assigned: list[TopicPartition]) -> set[Partition]:
        """Resume from the local checkpoint that matches the group's committed offsets,
        take any partition the state topic holds newer state for from there, and move the
        consumer to the offsets that state corresponds to. Returns those partitions:
        records already fetched for them are stale. Runs at start and after a failed
        delivery, so state and positions always agree."""
        mine = {(tp.topic, tp.partition) for tp in assigned}
        committed = self._committed(assigned)
        self._fresh_state()
        cp = self.store.resume_point(committed, mine)
        covered: Offsets = {}
        if self.updates:  # from the checkpoint, or from nothing: what follows is replayed
            self.updates.restore(cp.pipeline.arrays if cp is not None else {})
        if cp is not None:
            self.pipeline.restore(cp.pipeline)
            if cp.decoder is not None and hasattr(self.decoder, "restore"):
                self.decoder.restore(cp.decoder)
            covered = {tp: o for tp, o in cp.offsets.items() if tp in mine}
            self.owners = KeyOwners(cp.owners)
            self.counted = self.pipeline.counts()
            log.info("resumed from %s: %d keys, %d open alarms, offsets %s", cp.path.name,
                     len(self.pipeline.keys.names), len(self.pipeline.events.open), covered)
            self.metrics.moves.labels("in", "checkpoint").inc(len(covered))
            elsewhere = set(self.owners.of.values()) - mine
            if elsewhere:
                self._release(elsewhere, quiet=True)
        else:
            log.info("no checkpoint to resume from: fresh state at offsets %s",
                     committed or "(group start)")
        # partitions the checkpoint does not cover start where the group committed them
        self.positions = {**committed, **covered}
        self._receive(mine, committed, covered)
        self._seek_to_state(assigned)
        self.restored = True
        self.metrics.ready = True
        return mine

    def _receive(self, partitions: set[Partition], committed: Offsets,
                 local: Offsets | None = None) -> None:
        """Take each partition's keys from the state topic when it holds state newer than
        what this daemon has (``local``: partitions the checkpoint covered), else start
        the partition at its committed offset: its keys warm up."""
        local = local or {}
        snapshots = self._read_state(partitions)
        for p in sorted(partitions):
            snap, have = snapshots.get(p), local.get(p)
            if snap is not None and have is not None and snap.offset <= have:
                continue  # the checkpoint is as new: keep it
            if snap is not None and have is None and snap.offset < committed.get(p, -1):
                log.warning("state of %s[%d] stops at offset %d, before the committed %d: "
                            "not used; its keys warm up", *p, snap.offset, committed[p])
                snap = None
            if snap is not None and self._take_over(p, snap):
                self.metrics.moves.labels("in", "state_topic").inc()
                continue
            if have is None:
                if p in committed:
                    self.positions[p] = committed[p]
                log.info("received %s[%d] without state: starts at offset %s, its keys warm "
                         "up", *p, committed.get(p, "(reset)"))
                self.metrics.moves.labels("in", "none").inc()

    def _read_state(self, partitions: set[Partition]) -> dict[Partition, Snapshot]:
        if self.state_topic is None:
            return {}
        try:
            return self.state_topic.read(partitions)
        except (KafkaError, TimeoutError, RuntimeError) as exc:
            log.error("could not read the state topic (%s); partitions %s start from their "
                      "committed offsets", exc, sorted(partitions))
            return {}

    def _take_over(self, partition: Partition, snap: Snapshot) -> bool:
        """Load a partition's keys from its snapshot (replacing what this daemon held)."""
        stale = self.owners.keys_in({partition})[partition]
        try:
            self.pipeline.forget_keys(stale)
            if self.updates:
                self.updates.updater.forget(stale)
            self.pipeline.import_keys(snap.state)
        except InputFormatError as exc:
            log.error("state of %s[%d] does not fit this model (%s); its keys warm up",
                      *partition, exc)
            return False
        if self.updates:
            self.updates.updater.import_alarms(snap.state.meta.get("updater_alarms", {}))
        self.owners.drop({partition})
        keys = snap.state.meta["keys"]
        self.owners.take(keys, partition)
        self.positions[partition] = snap.offset
        log.info("received %s[%d] with the state of %d keys (%d open alarms) at offset %d",
                 *partition, len(keys), len(snap.state.meta["open_alarms"]), snap.offset)
        return True

    def _release(self, partitions: set[Partition], quiet: bool = False) -> None:
        """Forget the state of partitions this daemon no longer owns: their next owner
        takes it from the state topic."""
        keys = self.owners.drop(partitions)
        self.pipeline.forget_keys(keys)
        if self.updates:
            self.updates.updater.forget(keys)
        for p in partitions:
            self.positions.pop(p, None)
        if not quiet:
            self.metrics.moves.labels("out", "state_topic" if self.state_topic else "none").inc(
                len(partitions))
            log.info("gave up %s (%d keys)", ", ".join(f"{t}[{p}]" for t, p in
                                                       sorted(partitions)), len(keys))

    def _seek_to_state(self, assigned: list[TopicPartition]) -> None:
        """Move the consumer to where the state stands for each partition. Always seek: the
        records of the poll that reported the assignment are dropped, so a partition with
        nothing applied yet must go back to its start too, or those records are skipped.
        A start chosen by ``auto_offset_reset`` is resolved and kept as the position, so
        a later rebalance returns to the same offset."""
        for tp in assigned:
            key = (tp.topic, tp.partition)
            offset = self.positions.get(key)
            if offset is not None:
                self.consumer.seek(tp, offset)
                continue
            if self.config.daemon.auto_offset_reset == "earliest":
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek_to_end(tp)
            self.positions[key] = self.consumer.position(tp)


class Rebalance(ConsumerRebalanceListener):
    """Hands state over before partitions are revoked and notes assignments for the loop
    (the listener runs inside the consumer's event loop, where the consumer itself must
    not be called; the loop restores state after poll)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if not revoked:
            return
        log.info("revoking %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in
                                          sorted(revoked)))
        self.daemon.hand_over()
        if self.daemon.config.daemon.rebalance == "cooperative":
            # only the partitions that move are revoked, and no assignment may follow
            self.daemon.assigned = sorted(set(self.daemon.consumer.assignment()) - set(revoked))

    def on_partitions_lost(self, lost: list[TopicPartition]) -> None:
        # evicted from the group: another member may own these already, so nothing of
        # them is written; uncommitted work on them is replayed by their new owner
        log.warning("lost %s (this daemon was evicted from the group)",
                    ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(lost)))
        # an open transaction holds their events: committed with the next interval's, they
        # would repeat what the new owner replays
        self.daemon.abort_open(KafkaError("partitions lost"))
        self.daemon.dirty = False
        self.daemon.assigned = []

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        self.daemon.assigned = list(self.daemon.consumer.assignment())
