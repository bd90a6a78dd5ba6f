"""The one pipeline: points in -> per-point scores and anomaly events out.

source rows -> key slots -> scale -> windows -> autoencoders + novelty -> calibrated score
            -> threshold -> alarm -> events

Pure and deterministic given a clock: nothing here knows about Kafka or files. The
daemon and the backtest drive the same :class:`Pipeline`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from streamae.clock import Clock, wall_clock
from streamae.config import Config
from streamae.errors import InputFormatError
from streamae.events import NOTES, EventBuilder
from streamae.models.calibration import ModelsPart
from streamae.models.detector import Detector
from streamae.models.scaler import Scaler
from streamae.novelty import Judged, Novelty
from streamae.pipeline_state import KeyHandover, PipelineState  # noqa: F401 (re-exported)
from streamae.threshold import Decision
from streamae.threshold.alarm import EVENT_NAMES
from streamae.types import Frame
from streamae.windows import DROPPED_FROM, STATUS_NAMES, Closed, Windows

if TYPE_CHECKING:
    from streamae.updater.rescale import Rescale

log = logging.getLogger(__name__)
Locate = Callable[[int], "dict[str, Any] | None"]  # row id -> {topic, partition, offset}
# scored windows (n, W, C), their keys, end times, mean scores, whether the key was in
# an alarm, and their novelty distances (nan: none): what an online updater learns from
WindowHook = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                       np.ndarray], None]

UNSCORED = len(STATUS_NAMES)  # accepted, but not scored: its key's warm-up
OUTPUT_STATUS = (*STATUS_NAMES, "unscored")


@dataclass
class Output:
    """Rows resolved by one call, in resolution order. ``row`` ids count input rows from 0
    across calls; ``score``/``threshold`` are nan where there is none."""

    row: np.ndarray
    key: np.ndarray
    ts: np.ndarray
    score: np.ndarray
    threshold: np.ndarray
    anomaly: np.ndarray
    status: np.ndarray
    events: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def empty() -> Output:
        f, i = np.empty(0), np.empty(0, dtype=np.int64)
        return Output(i, np.empty(0, dtype=object), f, f, f, np.empty(0, dtype=np.bool_),
                      np.empty(0, dtype=np.int8))

    @staticmethod
    def concat(parts: list[Output]) -> Output:
        parts = [p for p in parts if len(p.row) or p.events] or [Output.empty()]
        cols = {name: np.concatenate([getattr(p, name) for p in parts])
                for name in ("row", "key", "ts", "score", "threshold", "anomaly", "status")}
        return Output(**cols, events=[e for p in parts for e in p.events])


class KeyIndex:
    """Stable key -> slot numbering, with each slot's scaling statistics."""

    def __init__(self, detector: Detector) -> None:
        self.scaler = detector.scaler
        self.slot: dict[str, int] = {}
        self.names: list[str] = []
        channels = len(detector.channels)
        self.mean = np.zeros((0, channels))
        self.std = np.ones((0, channels))

    def slots_for(self, keys: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(keys.astype(str), return_inverse=True)
        ids = np.array([self.slot_of(k) for k in uniq], dtype=np.int64)
        return ids[inverse.reshape(-1)]

    def adopt(self, scaler: Scaler) -> tuple[np.ndarray, np.ndarray]:
        """Every key's statistics from ``scaler`` (another model's); returns the ones they
        replace ``(keys, channels)``."""
        before = self.mean, self.std
        stats = [scaler.stats(k) for k in self.names]
        shape = (len(self.names), self.mean.shape[1])
        self.mean = np.array([m for m, _ in stats], dtype=np.float64).reshape(shape)
        self.std = np.array([s for _, s in stats], dtype=np.float64).reshape(shape)
        self.scaler = scaler
        return before

    def slot_of(self, key: str) -> int:
        """The key's slot, numbering a new key next."""
        slot = self.slot.get(key)
        if slot is None:
            slot = self.slot[key] = len(self.names)
            self.names.append(key)
            mean, std = self.scaler.stats(key)
            self.mean = np.vstack([self.mean, mean])
            self.std = np.vstack([self.std, std])
        return slot


class Pipeline(KeyHandover):
    """Stateful streaming detector over many keys (its state: :class:`KeyHandover`)."""

    def __init__(self, detector: Detector, config: Config, clock: Clock = wall_clock,
                 locate: Locate | None = None) -> None:
        if config.window.size not in ("auto", detector.window):
            raise InputFormatError(f"model was trained with window {detector.window}, config "
                                   f"says window.size {config.window.size}")
        self.detector, self.config, self.clock = detector, config, clock
        self.keys = KeyIndex(detector)
        self.windows = Windows(dataclasses.replace(config.window, size=detector.window),
                               len(detector.channels))
        self.decision = Decision(config.threshold, config.alarm)
        self.novelty = self._novelty_for(detector)
        self.events = EventBuilder(detector.channels, config.scoring.top_channels)
        self.next_row = 0
        self.locate = locate
        self.on_windows: WindowHook | None = None
        self.latest = -np.inf  # newest event time seen
        self.notes: list[dict[str, Any]] = []  # decisions on open alarms, for the next output

    def process(self, frame: Frame) -> Output:
        """Push rows (in event-time order per key) and return every row resolved so far."""
        if frame.channels != self.detector.channels:
            raise InputFormatError(f"input channels {frame.channels} do not match the model's "
                                   f"{self.detector.channels}")
        n = len(frame)
        rows = np.arange(self.next_row, self.next_row + n, dtype=np.int64)
        self.next_row += n
        if n:
            self.latest = max(self.latest, float(frame.timestamps.max()))
        slots = self._slots(frame.keys)
        scaled = self.detector.scaler.transform(frame.values.astype(np.float64),
                                                self.keys.mean[slots], self.keys.std[slots])
        status, closed = self.windows.push(slots, frame.timestamps.astype(np.float64), scaled, rows)
        dropped = status >= DROPPED_FROM
        nan = np.full(int(dropped.sum()), np.nan)
        early = Output(rows[dropped], frame.keys[dropped], frame.timestamps[dropped], nan, nan,
                       np.zeros(len(nan), dtype=np.bool_), status[dropped])
        return Output.concat([self._take_notes(), early, *(self._score(c) for c in closed)])

    def note(self, key: str, status: str) -> bool:
        """A decision on a key's open alarm (``rescaled``: taken for a recalibration;
        ``admitted`` / ``rejected``: an operator's word that it is a new normal / an
        incident) as an event of that alarm, sent with the next output. False when the
        key has no open alarm here."""
        if status not in NOTES:
            raise ValueError(f"{status!r} is not a decision on an alarm ({', '.join(NOTES)})")
        if key not in self.events.open:
            return False
        self.notes.append(self.events.event(key, status, self.latest, self.latest,
                                            self.detector.version, self.clock()))
        return True

    def take_notes(self) -> list[dict[str, Any]]:
        """The decision events not sent yet (they leave the pipeline)."""
        notes, self.notes = self.notes, []
        return notes

    def _take_notes(self) -> Output:
        out = Output.empty()
        out.events = self.take_notes()
        return out

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        """Key slots of ``keys``; keys seen for the first time get windows and a threshold
        from the model's held-out scores."""
        known = len(self.keys.names)
        slots = self.keys.slots_for(keys)
        self._grow(known)
        return slots

    def _novelty_for(self, detector: Detector) -> Novelty | None:
        """Per-key memories of recent windows for the detector's novelty member (None
        when it has none)."""
        settings = detector.calibration.novelty
        if not settings.on:
            return None
        return Novelty(settings, detector.window, len(detector.channels),
                       hop=self.config.window.hop)

    def _grow(self, known: int) -> None:
        n = len(self.keys.names)
        self.windows.ensure(n)
        self.decision.ensure(n)
        if n > known:
            cal = self.detector.calibration
            self.decision.seed({s: cal.sample_for(self.keys.names[s]) for s in range(known, n)})
        if self.novelty is not None:
            self.novelty.ensure(n)
            self._seed_novelty(range(known, n))

    def _seed_novelty(self, slots: Any) -> None:
        """Keys seen in training start remembering their training history; others start
        with an empty memory."""
        assert self.novelty is not None
        seeds = self.detector.calibration.novelty_seeds
        for slot in slots:
            seed = seeds.get(self.keys.names[slot])
            if seed is not None:
                self.novelty.seed(int(slot), seed)
            else:
                self.novelty.reset(np.array([slot]))

    def flush(self) -> Output:
        """End of stream: score what every key still holds (a partial hop)."""
        return Output.concat([self._take_notes(), *(self._score(c) for c in self.windows.flush())])

    def warm_up(self) -> None:
        """Compile the Numba kernels and run the model once on a throwaway pipeline, so the
        first real batch is not slowed by start-up work."""
        probe = Pipeline(self.detector, self.config)
        n = self.windows.size + self.config.window.hop
        channels = self.detector.channels
        probe.process(Frame(np.arange(1.0, n + 1.0), np.full(n, "warm-up", dtype=object),
                            np.zeros((n, len(channels)), dtype=np.float32), channels))
        probe.flush()

    def counts(self) -> dict[str, int]:
        return self.windows.counts()

    def swap(self, detector: Detector, calibration: dict[str, np.ndarray] | None = None) -> None:
        """Score with ``detector`` from the next batch on (call between batches).
        ``calibration`` maps keys to their recent scores under ``detector``: those keys'
        thresholds restart from them (see :meth:`Decision.refit`)."""
        if detector.window != self.detector.window or detector.channels != self.detector.channels:
            raise InputFormatError(f"cannot swap in model {detector.version}: window/channels "
                                   f"{detector.window}/{detector.channels} differ from "
                                   f"{self.detector.window}/{self.detector.channels}")
        log.info("model swap %s -> %s", self.detector.version, detector.version)
        new, old = detector.calibration.novelty, self.detector.calibration.novelty
        rescaled = detector.scaler.to_json() != self.detector.scaler.to_json()
        if rescaled:
            self._scale_for(detector)
        restart = rescaled or (new.size, new.steps) != (old.size, old.steps)
        if restart:
            log.info("model %s remembers windows differently (%s): every key's memory of "
                     "recent windows starts again (from its training history where the "
                     "model has it)", detector.version, new)
            self.novelty = self._novelty_for(detector)
        elif self.novelty is not None:
            self.novelty.settings = new  # same memory layout; least and weight may differ
        self.detector = detector
        if restart and self.novelty is not None:
            self.novelty.ensure(len(self.keys.names))
            self._seed_novelty(range(len(self.keys.names)))
        if calibration:
            self.recalibrate(calibration)

    def _scale_for(self, detector: Detector) -> None:
        """A model with its own scaling (trained apart, not fine-tuned from this one):
        every key's statistics come from it (re-scalings made under the old one are
        dropped) and the points each window holds are mapped to it."""
        log.info("model %s scales its inputs differently: every key's windows are mapped "
                 "to its scaling", detector.version)
        mean, std = self.keys.adopt(detector.scaler)
        n = len(self.keys.names)
        raw = self.windows.ring[:n] * std[:, None, :] + mean[:, None, :]
        self.windows.ring[:n] = detector.scaler.transform(raw, self.keys.mean[:, None, :],
                                                          self.keys.std[:, None, :])

    def recalibrate(self, calibration: dict[str, np.ndarray], lent: bool = False) -> None:
        """Restart the given keys' thresholds from their recent scores under the current
        model (see :meth:`Decision.refit`; ``lent``: a new normal's first scores); open
        alarms stay open until calm."""
        slots = {self.keys.slot[k]: v for k, v in calibration.items() if k in self.keys.slot}
        self.decision.refit(slots, lent)

    def rewarm_thresholds(self) -> None:
        """Every key's threshold starts again from the model's held-out scores (after a
        model whose scores live on another scale was swapped in without calibration
        data)."""
        self._reseed(np.arange(len(self.keys.names)))

    def _reseed(self, slots: np.ndarray) -> None:
        cal = self.detector.calibration
        self.decision.reseed({int(s): cal.sample_for(self.keys.names[s]) for s in slots})

    def rescale(self, key: str, change: Rescale) -> None:
        """New scaling for a key's moved channels (a recalibrated sensor): its raw mean and
        spread change, the points its window holds are mapped to the new scaling, and its
        threshold starts again from the model's held-out scores (what it learnt during
        the alarm is not its normal; its alarm closes once calm). Its memory of recent
        windows stays: they are its normal in the scaled space the new scaling maps its
        recalibrated sensor back onto."""
        slot = self.keys.slot.get(key)
        if slot is None:
            return
        self.keys.mean[slot], self.keys.std[slot] = change.of(self.keys.mean[slot],
                                                              self.keys.std[slot])
        self.windows.ring[slot] = change.windows(self.windows.ring[slot][None])[0]
        self._reseed(np.array([slot]))
        self.note(key, "rescaled")

    def _score(self, closed: Closed) -> Output:
        """Closed windows -> resolved rows and events: the models once for all of them,
        then the novelty, threshold and alarm stages in rounds (:meth:`_rounds`)."""
        models = None
        if closed.scorable.any():
            # a window's newest hop steps are the ones the calibration knows (and that have
            # a full past to be forecast from): older ones of a key's first window stay
            # unscored, as warm-up
            errors = self.detector.errors(closed.data[closed.scorable],
                                          self.config.scoring.batch_size)
            models = self.detector.calibration.models_part(
                errors, newest=min(self.config.window.hop, self.windows.size))
        if self.novelty is None:
            return self._decide(closed, models, None)
        at = np.cumsum(closed.scorable) - 1  # each scorable window's row in the models' part
        parts = []
        for idx in self._rounds(closed):
            part = closed.take(idx)
            mine = None if models is None else models.take(at[idx[part.scorable]])
            judged = self.novelty.judge(part.slot, part.data, part.new, part.scorable)
            parts.append(self._decide(part, mine, judged))
        return Output.concat(parts)

    def _rounds(self, closed: Closed) -> list[np.ndarray]:
        """Windows in rounds that each cover less than W points of any key. A window is
        remembered once the alarm stage has judged it, and compared with those that ended
        W points or more before it: all of them are in earlier rounds, so results do not
        depend on how the stream was batched."""
        w = self.windows.size
        order = np.argsort(closed.slot, kind="stable")
        new = closed.new[order].astype(np.int64)
        total = np.cumsum(new)
        first = np.r_[True, closed.slot[order][1:] != closed.slot[order][:-1]]
        before = np.maximum.accumulate(np.where(first, total - new, 0))
        rounds = np.empty(len(closed), dtype=np.int64)
        rounds[order] = (total - before - 1) // w  # points into this batch, per key
        if not len(closed) or rounds.max() == 0:
            return [np.arange(len(closed))]
        return [np.flatnonzero(rounds == r) for r in range(int(rounds.max()) + 1)]

    def _decide(self, closed: Closed, models: ModelsPart | None, judged: Judged | None
                ) -> Output:
        """Scores of closed windows from their models' part and novelty, then the
        threshold and alarm stages; what was normal is remembered and handed on."""
        w = self.windows.size
        step_err = np.full(closed.rows.shape, np.nan, dtype=np.float32)
        chan_err = np.zeros((*closed.rows.shape, len(self.detector.channels)), dtype=np.float32)
        window_score = np.full(len(closed.rows), np.nan)
        if models is not None and closed.scorable.any():
            given = (None if judged is None else
                     (judged.distance[closed.scorable], judged.share[closed.scorable]))
            s, c = self.detector.calibration.finish(models, given)
            s[:, : w - min(self.config.window.hop, w)] = np.nan
            step_err[closed.scorable], chan_err[closed.scorable] = s, c
            window_score[closed.scorable] = np.nanmean(s, axis=1)
        take = np.arange(w)[None, :] >= (w - closed.new)[:, None]
        slot = np.broadcast_to(closed.slot[:, None], take.shape)[take]
        out, last_hot = self._alarms(closed.rows[take], slot, closed.ts[take],
                                     step_err[take].astype(np.float64), chan_err[take])
        if closed.scorable.any():
            self._learn(closed, judged, window_score, self._protected(closed, take, last_hot))
        return out

    def _alarms(self, rows: np.ndarray, slot: np.ndarray, ts: np.ndarray, score: np.ndarray,
                channel_error: np.ndarray) -> tuple[Output, np.ndarray]:
        """Threshold and alarm stages over resolved points, their events; and when each
        point's key was last in alarm or over its threshold."""
        keys = np.array(self.keys.names, dtype=object)[slot]  # plain str, JSON-ready
        status = np.where(np.isnan(score), UNSCORED, 0).astype(np.int8)
        threshold = np.full(len(rows), np.nan)
        anomaly = np.zeros(len(rows), dtype=np.bool_)
        last_hot = np.full(len(rows), -np.inf)
        out = Output(rows, keys, ts, score, threshold, anomaly, status)
        scored = ~np.isnan(score)
        if scored.any():
            idx = np.flatnonzero(scored)
            thr, alarm = self.decision.apply(slot[idx], ts[idx], score[idx])
            threshold[idx], anomaly[idx], last_hot[idx] = thr, alarm.anomaly, alarm.last_hot
            for j in np.flatnonzero(alarm.peak | (alarm.event != 0)):
                i = idx[j]
                if alarm.peak[j]:
                    self.events.peak(keys[i], score[i], thr[j], channel_error[i])
                if alarm.event[j]:
                    out.events.append(self.events.event(
                        keys[i], EVENT_NAMES[int(alarm.event[j])], ts[i], alarm.event_ts[j],
                        self.detector.version, self.clock(),
                        self.locate(int(rows[i])) if self.locate else None))
        return out, last_hot

    def _learn(self, closed: Closed, judged: Judged | None, window_score: np.ndarray,
               protected: np.ndarray) -> None:
        """Scored windows that were normal join their keys' novelty memories; all go to
        the window hook (the updater), with whether they were protected."""
        idx = np.flatnonzero(closed.scorable)
        if judged is not None:
            normal = np.zeros(len(closed), dtype=np.bool_)
            normal[idx] = ~protected
            self.novelty.remember(closed.slot, judged, normal)
        if self.on_windows is not None:
            names = np.array(self.keys.names, dtype=object)[closed.slot[idx]]
            novelty = judged.distance[idx] if judged is not None else np.full(len(idx), np.nan)
            self.on_windows(closed.data[idx], names, closed.ts[idx, -1], window_score[idx],
                            protected, novelty)

    @staticmethod
    def _protected(closed: Closed, take: np.ndarray, last_hot: np.ndarray) -> np.ndarray:
        """Per scorable window, whether it is kept out of what is learnt as normal (the
        novelty memory, the updater's training): any of its points lies in an alarm or
        crossed the threshold (an incident's edges, and bursts too short or too weak to
        open one), i.e. its key was last so at or after the window's first point, as of
        its newest point."""
        grid = np.full(take.shape, -np.inf)
        grid[take] = last_hot
        idx = np.flatnonzero(closed.scorable)
        return grid[idx, -1] >= closed.ts[idx, 0]
