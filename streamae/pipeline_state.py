"""A pipeline's state as plain arrays: saved and restored by the daemon's checkpoints,
and handed over key by key when partitions move between daemons."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from streamae.errors import InputFormatError

if TYPE_CHECKING:
    from streamae.events import EventBuilder
    from streamae.models.detector import Detector
    from streamae.novelty import Novelty
    from streamae.threshold import Decision
    from streamae.windows import Windows

log = logging.getLogger(__name__)


@dataclass
class PipelineState:
    """A pipeline's state as plain arrays plus JSON-ready metadata (no pickle)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def _section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


class KeyHandover:
    """What :class:`~streamae.pipeline.Pipeline` saves, restores, exports and imports: its
    keys' windows, scaling, novelty memories, thresholds, alarms and open events."""

    detector: Detector
    keys: Any
    windows: Windows
    decision: Decision
    novelty: Novelty | None
    events: EventBuilder
    next_row: int
    latest: float
    notes: list[dict[str, Any]]

    def _grow(self, known: int) -> None:  # pragma: no cover - the pipeline's
        raise NotImplementedError

    def _reseed(self, slots: np.ndarray) -> None:  # pragma: no cover - the pipeline's
        raise NotImplementedError

    def _seed_novelty(self, slots: Any) -> None:  # pragma: no cover - the pipeline's
        raise NotImplementedError

    def state(self) -> PipelineState:
        """Everything a restart needs to carry on where this pipeline stands."""
        arrays = {**{f"windows.{k}": v for k, v in self.windows.state_dict().items()},
                  **{f"decision.{k}": v for k, v in self.decision.state_dict().items()},
                  **self._novelty_rows(None),
                  "keys.mean": self.keys.mean.copy(), "keys.std": self.keys.std.copy()}
        meta = {"keys": list(self.keys.names), "next_row": self.next_row,
                "open_alarms": self.events.open, "model_version": self.detector.version,
                "latest": self.latest, "notes": self.notes}
        return PipelineState(arrays, meta)

    def restore(self, state: PipelineState) -> None:
        """Load a :meth:`state`. Windows and alarms always carry over; threshold state only
        when the model version is the same (another model's scores live on another scale)."""
        meta = state.meta
        for key in meta["keys"]:  # slots in the saved order (not sorted)
            self.keys.slot_of(key)
        assert self.keys.names == meta["keys"], "restore into a fresh pipeline"
        if "keys.mean" in state.arrays:  # re-scaled keys (absent in older states)
            self.keys.mean = np.array(state.arrays["keys.mean"], dtype=np.float64)
            self.keys.std = np.array(state.arrays["keys.std"], dtype=np.float64)
        self.windows.load_state_dict(_section(state.arrays, "windows."))
        decision = _section(state.arrays, "decision.")
        other = meta["model_version"] != self.detector.version
        if other:
            log.warning("state was saved with model %s, scoring with %s: thresholds start "
                        "again from the model's held-out scores", meta["model_version"],
                        self.detector.version)
            self._grow(0)
            decision = {k: v for k, v in decision.items() if k.startswith("alarm.")} | {
                k: v for k, v in self.decision.state_dict().items() if k.startswith("threshold.")}
        self.decision.load_state_dict(decision)
        self._load_novelty(None, _section(state.arrays, "novelty."))
        self.events.open = {k: dict(v) for k, v in meta["open_alarms"].items()}
        self.next_row = int(meta["next_row"])
        self.latest = float(meta.get("latest", -np.inf))  # absent in older states
        self.notes = list(meta.get("notes", []))

    def export_keys(self, names: list[str]) -> PipelineState:
        """The state of just these keys (known to this pipeline), for another pipeline to
        :meth:`import_keys`: how a partition's keys move between daemons."""
        slots = np.array([self.keys.slot[k] for k in names], dtype=np.int64)
        arrays = {**{f"windows.{k}": v for k, v in self.windows.take(slots).items()},
                  **{f"decision.{k}": v for k, v in self.decision.take(slots).items()},
                  **self._novelty_rows(slots),
                  "keys.mean": self.keys.mean[slots], "keys.std": self.keys.std[slots]}
        del arrays["windows.ring_rows"]  # row ids are numbered per pipeline
        meta = {"keys": list(names), "model_version": self.detector.version,
                "window": self.windows.size, "channels": list(self.detector.channels),
                "open_alarms": {k: self.events.open[k] for k in names if k in self.events.open}}
        return PipelineState(arrays, meta)

    def import_keys(self, state: PipelineState) -> None:
        """Take over keys exported by another pipeline: their windows, alarms and (same
        model version only) thresholds carry on from where that pipeline left them."""
        meta = state.meta
        if meta["window"] != self.windows.size or meta["channels"] != self.detector.channels:
            raise InputFormatError(
                f"state of window {meta['window']} over {meta['channels']} does not fit this "
                f"model's window {self.windows.size} over {self.detector.channels}")
        names = meta["keys"]
        known = len(self.keys.names)
        slots = np.array([self.keys.slot_of(k) for k in names], dtype=np.int64)
        self._grow(known)
        if "keys.mean" in state.arrays:
            self.keys.mean[slots] = state.arrays["keys.mean"]
            self.keys.std[slots] = state.arrays["keys.std"]
        windows = _section(state.arrays, "windows.")
        windows["ring_rows"] = np.full(windows["ring_ts"].shape, -1, dtype=np.int64)
        self.windows.put(slots, windows)
        self._load_novelty(slots, _section(state.arrays, "novelty."))
        self.decision.put(slots, _section(state.arrays, "decision."))
        if meta["model_version"] != self.detector.version:
            log.warning("%d keys arrive with state of model %s, scoring with %s: their "
                        "thresholds start again from the model's held-out scores", len(names),
                        meta["model_version"], self.detector.version)
            self._reseed(slots)
        for key in names:
            self.events.open.pop(key, None)
        self.events.open.update({k: dict(v) for k, v in meta["open_alarms"].items()})

    def forget_keys(self, names: list[str]) -> None:
        """Drop what these keys hold (they moved to another pipeline); if they come back,
        they start over or are imported again."""
        slots = np.array([self.keys.slot[k] for k in names if k in self.keys.slot],
                         dtype=np.int64)
        self.windows.reset(slots)
        if self.novelty is not None:
            self._seed_novelty(slots)
        self._reseed(slots)
        self.decision.alarm.reset(slots)
        for key in names:
            self.events.open.pop(key, None)

    def _novelty_rows(self, slots: np.ndarray | None) -> dict[str, np.ndarray]:
        """The memories of recent windows (of ``slots``; None: all), as state arrays."""
        if self.novelty is None:
            return {}
        rows = self.novelty.state_dict() if slots is None else self.novelty.take(slots)
        return {f"novelty.{k}": v for k, v in rows.items()}

    def _load_novelty(self, slots: np.ndarray | None, rows: dict[str, np.ndarray]) -> None:
        """Carry saved memories over when their windows were kept the same way (a ring of
        another length is re-laid); otherwise the keys' memories start again (they
        refill as the keys stream)."""
        if self.novelty is None or not rows:
            return
        if rows["bank"].shape[-1] != rows["ends"].shape[-1] * self.novelty.dim:
            log.warning("saved memories of recent windows have another shape: they start "
                        "again")
            return
        if slots is None:
            self.novelty.load_state_dict(rows)
        else:
            self.novelty.put(slots, rows)

