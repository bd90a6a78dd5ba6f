"""Atomic checkpoints of the daemon's state, tied to the input offsets they correspond to.

A checkpoint holds the pipeline state (per-key windows, threshold and alarm state, open
alarms, model version), the input decoder's state and the *next* offset of every input
partition. It is one ``.npz`` file (arrays plus a JSON document; loaded with
``allow_pickle=False``), written to a temporary name, fsynced and renamed, so a crash
leaves either the old or the new file, never half of one.

Order of one commit (the daemon's ``_commit``), per delivery mode:

at-least-once
    1. events and dead letters of every batch since the last commit are sent;
    2. ``producer.flush()``: every one is acknowledged by all in-sync replicas;
    3. with a state topic (``daemon.state_topic``): each partition whose keys moved on gets
       a snapshot of them, sent and flushed only now, after the events it follows;
    4. the checkpoint (state + next offsets) is written;
    5. the offsets are committed to the consumer group.
    A crash before 4 replays the interval from the previous checkpoint: its events are sent
    again (same ``event_id``), which is the promise of at-least-once. A crash between 4
    and 5 is caught on restart by the offset match below.

exactly-once
    1. a Kafka transaction is open for the interval; events and dead letters go into it;
    2. the checkpoint is written;
    3. state-topic snapshots (when configured) go into the same transaction;
    4. the offsets are added to the transaction and it commits. Each transactional call
       is bounded by ``daemon.commit_timeout``; one that runs out aborts the transaction
       (or, when the broker cannot be reached, replaces the producer, which fences the
       old one) and the interval is replayed from the last durable checkpoint.
    A crash before 4 aborts the transaction: no consumer in ``read_committed`` mode ever
    sees its events, and the group's offsets still point at the previous checkpoint.

Only a clean stop (SIGTERM, SIGINT, end of input) commits on the way out. After an
unhandled error nothing more is committed: the state in memory may hold a batch whose
events were never sent, and the next start replays it from the last durable point.

On start the group's committed offsets are the truth: the newest checkpoint whose offsets
equal them is the state to resume from. Failing that, the newest checkpoint behind them is
loaded and the consumer rewinds to its offsets (events in between are sent again).
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamae import atomic
from streamae.pipeline import PipelineState

log = logging.getLogger(__name__)
FORMAT = 1
_NAME = re.compile(r"checkpoint-(\d{12})\.npz$")
Offsets = dict[tuple[str, int], int]


@dataclass
class Checkpoint:
    seq: int
    offsets: Offsets
    pipeline: PipelineState
    decoder: dict[str, Any] | None
    written_at: float
    owners: dict[str, tuple[str, int]]  # key -> the input partition it arrives on
    path: Path | None = None


def pack(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays plus a JSON document as ``.npz`` bytes (checkpoints and state records)."""
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


def unpack(source: bytes | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document and arrays of :func:`pack`'s output; nothing is unpickled."""
    with np.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                 allow_pickle=False) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        return meta, {k: data[k] for k in data.files if k != "__meta__"}


def _seq(path: Path) -> int:
    return int(_NAME.search(path.name).group(1))


class CheckpointStore:
    """Numbered checkpoint files in one directory; the newest ``keep`` are kept, and the
    newest whose offsets are known to be committed (:meth:`confirm`) until a newer one is:
    after commits that failed in a row, it is the one a restart resumes from."""

    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.confirmed: int | None = None  # seq of the newest committed checkpoint
        existing = self._paths()
        self.seq = _seq(existing[-1]) if existing else 0

    def _paths(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if _NAME.search(p.name))

    def save(self, offsets: Offsets, pipeline: PipelineState,
             decoder: dict[str, Any] | None = None,
             owners: dict[str, tuple[str, int]] | None = None) -> Path:
        self.seq += 1
        meta = {"format": FORMAT, "seq": self.seq, "written_at": time.time(),
                "offsets": [[t, p, o] for (t, p), o in sorted(offsets.items())],
                "pipeline": pipeline.meta, "decoder": decoder,
                "owners": [[k, t, p] for k, (t, p) in (owners or {}).items()]}
        raw = pack(meta, pipeline.arrays)
        path = self.dir / f"checkpoint-{self.seq:012d}.npz"
        atomic.write_bytes(path, raw)
        for old in self._paths()[: -self.keep]:
            if _seq(old) != self.confirmed:
                old.unlink(missing_ok=True)
        return path

    def confirm(self) -> None:
        """The newest checkpoint's offsets are committed."""
        self.confirmed = self.seq

    def load(self, path: Path) -> Checkpoint:
        meta, arrays = unpack(path)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')}")
        offsets = {(t, p): o for t, p, o in meta["offsets"]}
        owners = {k: (t, p) for k, t, p in meta.get("owners", [])}
        return Checkpoint(meta["seq"], offsets, PipelineState(arrays, meta["pipeline"]),
                          meta["decoder"], meta["written_at"], owners, path)

    def checkpoints(self) -> list[Checkpoint]:
        """Every readable checkpoint, newest first (unreadable ones are logged and skipped)."""
        found = []
        for path in reversed(self._paths()):
            try:
                found.append(self.load(path))
            except Exception as exc:  # a torn or foreign file must not block a restart
                log.warning("skipping unreadable checkpoint %s: %s", path, exc)
        return found

    def resume_point(self, committed: Offsets,
                     assigned: set[tuple[str, int]] | None = None) -> Checkpoint | None:
        """The checkpoint to resume from, given the group's committed offsets (see module
        doc): an exact match first, else the newest one not ahead of them. Only the
        ``assigned`` partitions count (default: those of ``committed``)."""
        mine = set(committed) if assigned is None else assigned
        candidates = [(cp, {tp: o for tp, o in cp.offsets.items() if tp in mine})
                      for cp in self.checkpoints()]
        for cp, offsets in candidates:
            if offsets and offsets == committed:
                self.confirmed = cp.seq
                return cp
        for cp, offsets in candidates:
            if offsets and all(committed.get(tp, -1) >= off for tp, off in offsets.items()):
                log.warning("no checkpoint matches the committed offsets %s; resuming from "
                            "older checkpoint %s and replaying from its offsets", committed,
                            cp.path)
                self.confirmed = cp.seq
                return cp
        if candidates:
            log.warning("every checkpoint in %s is ahead of the committed offsets %s; starting "
                        "with fresh state", self.dir, committed)
        return None
