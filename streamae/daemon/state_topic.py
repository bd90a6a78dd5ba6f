"""Per-partition state on a compacted Kafka topic: how keys move between daemons.

Every commit writes, for each input partition that moved on, one record holding the state
of that partition's keys (windows, thresholds, alarm state, open alarms) and the input
offset it stands at. The record key names the group and the input partition, so compaction
keeps the newest snapshot of each. A daemon that receives a partition in a rebalance reads
that record and carries on from it: its keys are scored at once (no warm-up) and their open
alarms stay open (none fires again). A daemon giving a partition up writes it first.

Records are ``.npz`` bytes (arrays plus a JSON document, loaded with
``allow_pickle=False``): nothing is unpickled. In exactly-once mode they are written in the
interval's transaction and read with ``read_committed``.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.producer.future import FutureRecordMetadata

from streamae.config import KafkaConfig
from streamae.daemon.checkpoint import pack, unpack
from streamae.daemon.clients import client_settings
from streamae.pipeline import PipelineState

log = logging.getLogger(__name__)
FORMAT = 1
MAX_RECORD_BYTES = 64 << 20  # the topic's max.message.bytes and the producer's request limit
Partition = tuple[str, int]


@dataclass
class Snapshot:
    """One input partition's keys, as of ``offset`` (the next record to apply)."""

    offset: int
    state: PipelineState


def encode(group: str, partition: Partition, snap: Snapshot) -> bytes:
    meta = {"format": FORMAT, "group": group, "topic": partition[0],
            "partition": partition[1], "offset": snap.offset, "written_at": time.time(),
            "pipeline": snap.state.meta}
    return pack(meta, snap.state.arrays)


def decode(raw: bytes) -> tuple[str, Partition, Snapshot]:
    meta, arrays = unpack(raw)
    if meta.get("format") != FORMAT:
        raise ValueError(f"unknown state record format {meta.get('format')}")
    return (meta["group"], (meta["topic"], int(meta["partition"])),
            Snapshot(int(meta["offset"]), PipelineState(arrays, meta["pipeline"])))


class StateTopic:
    """Writes and reads one group's partition snapshots on ``topic``."""

    def __init__(self, config: KafkaConfig, topic: str, group: str,
                 read_committed: bool) -> None:
        self.config, self.topic, self.group = config, topic, group
        self.read_committed = read_committed
        self._reader: KafkaConsumer | None = None
        self._partitions: int | None = None

    def _record_key(self, partition: Partition) -> bytes:
        return f"{self.group}/{partition[0]}/{partition[1]}".encode()

    def _home(self, partition: Partition, count: int) -> int:
        """The state-topic partition holding an input partition's record (stable as long as
        the state topic keeps its partition count)."""
        return (zlib.crc32(partition[0].encode()) + partition[1]) % count

    def _count(self, known: set[int] | None) -> int:
        if self._partitions is None:
            if not known:
                raise RuntimeError(f"state topic {self.topic} has no partitions")
            self._partitions = len(known)
        return self._partitions

    def write(self, producer: KafkaProducer,
              snapshots: dict[Partition, Snapshot]) -> list[FutureRecordMetadata]:
        """Send one record per partition (the caller flushes or commits the transaction)."""
        count = self._count(producer.partitions_for(self.topic))
        sent = []
        for partition, snap in snapshots.items():
            raw = encode(self.group, partition, snap)
            if len(raw) > MAX_RECORD_BYTES:
                log.error("state of %s[%d] is %d bytes, over the %d a record may hold: not "
                          "written (its next owner replays from the committed offset)",
                          *partition, len(raw), MAX_RECORD_BYTES)
                continue
            sent.append(producer.send(self.topic, key=self._record_key(partition), value=raw,
                                      partition=self._home(partition, count)))
        return sent

    def read(self, wanted: set[Partition], timeout: float = 60.0) -> dict[Partition, Snapshot]:
        """The newest snapshot of each wanted partition that has one. Reads backwards from
        the end in growing chunks, so the cost is the distance to the newest record, not
        the length of a log compaction has not cleaned yet."""
        if not wanted:
            return {}
        reader = self._open()
        count = self._count(reader.partitions_for_topic(self.topic))
        keys = {self._record_key(p): p for p in wanted}
        raw: dict[Partition, bytes | None] = {}
        deadline = time.monotonic() + timeout
        for home in sorted({self._home(p, count) for p in wanted}):
            tp = TopicPartition(self.topic, home)
            here = {k for k, p in keys.items() if self._home(p, count) == home}
            raw.update(self._newest(reader, tp, here, keys, deadline))
        out = {}
        for partition, value in raw.items():
            if value is None:
                continue
            try:
                group, where, snap = decode(value)
            except Exception as exc:  # a foreign or torn record must not stop the daemon
                log.warning("unreadable state record for %s[%d]: %s; that partition starts "
                            "from its committed offset", *partition, exc)
                continue
            if group == self.group and where == partition:
                out[partition] = snap
        return out

    def _newest(self, reader: KafkaConsumer, tp: TopicPartition, wanted: set[bytes],
                keys: dict[bytes, Partition], deadline: float) -> dict[Partition, bytes | None]:
        reader.assign([tp])
        low = reader.beginning_offsets([tp])[tp]
        high = reader.end_offsets([tp])[tp]
        found: dict[Partition, bytes | None] = {}
        step = 256
        while wanted and high > low:
            start = max(low, high - step)
            newest: dict[bytes, bytes | None] = {}
            reader.seek(tp, start)
            while reader.position(tp) < high:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading state topic {self.topic} took too long")
                for records in reader.poll(timeout_ms=200).values():
                    for rec in records:
                        if rec.offset < high and rec.key in wanted:
                            newest[rec.key] = rec.value  # later records overwrite
            for key, value in newest.items():
                found[keys[key]] = value
                wanted.discard(key)
            high, step = start, step * 4
        return found

    def _open(self) -> KafkaConsumer:
        if self._reader is None:
            self._reader = KafkaConsumer(
                **client_settings(self.config), group_id=None, enable_auto_commit=False,
                isolation_level="read_committed" if self.read_committed else "read_uncommitted",
                fetch_max_bytes=MAX_RECORD_BYTES, max_partition_fetch_bytes=MAX_RECORD_BYTES)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def topic_options() -> dict[str, Any]:
    """Settings of a newly created state topic."""
    return {"cleanup.policy": "compact", "max.message.bytes": str(MAX_RECORD_BYTES),
            "segment.ms": "3600000"}  # roll hourly, so compaction keeps the log short
