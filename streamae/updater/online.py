"""The online updater: learns from the pipeline's scored windows, decides when to
fine-tune, runs a round (gate included) and hands accepted models over for a swap.

Triggers: a schedule (every N windows, every T of event time), a river drift detector on
the stream of window scores, and a manual request. After a round, ``triggers.cooldown`` of event
time passes before the next. Rounds run inline (backtests: reproducible on event time) or
on a background thread (the daemon: scoring never waits); either way the live model is
only replaced by :meth:`OnlineUpdater.poll`, between batches.

A key that stays in alarm for ``relearn.rescale_after`` is tried as a recalibrated sensor
(:mod:`streamae.updater.rescale`): if new scaling of its moved channels makes it score as
normal, it gets that scaling on the same model. A key that stays in alarm for
``relearn.admit_after`` has a new normal: its quarantined windows enter the buffer, a round is
asked for, and at once (without waiting for a model) its threshold re-learns on its
recent scores, so one changed sensor does not stay in alarm for the hours a round and its
gate take. An operator can reject a key's alarm as an incident: then neither happens.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from streamae.config import Config
from streamae.models.detector import Detector
from streamae.updater.buffer import KeyedReplayBuffer, ReplayBuffer
from streamae.updater.finetune import fine_tune
from streamae.updater.gate import validate
from streamae.updater.rescale import Rescale, search
from streamae.updater.store import ModelStore

if TYPE_CHECKING:
    from streamae.pipeline import Pipeline

log = logging.getLogger(__name__)
HISTORY = 1000  # rounds and re-scales an updater keeps for its reports
RESCALE_SPAN = 8  # a re-scale looks at up to this many times threshold.init_points points


def drift_detector(name: str) -> Any:
    from river import drift

    return {"adwin": lambda: drift.ADWIN(delta=1e-4),
            "page-hinkley": lambda: drift.PageHinkley(),
            "kswin": lambda: drift.KSWIN(seed=0),
            "none": lambda: None}[name]()


@dataclass
class Round:
    """One update round: why it ran and what came of it."""

    at: float
    reason: str
    accepted: bool
    candidate: str | None = None
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Snapshot:
    """A round's copy of the buffer: training windows (with times and keys, oldest first),
    the newest windows for the gate, and each key's newest windows for its threshold."""

    windows: np.ndarray
    ts: np.ndarray
    keys: np.ndarray
    novelty: np.ndarray  # each window's novelty distance as scored (nan: none)
    held: int  # newest windows held out for the gate and the new calibration
    recent: np.ndarray
    newest: dict[str, tuple[np.ndarray, np.ndarray]]  # windows and their novelty
    quarantined: np.ndarray | None = None  # windows from inside alarms, for the gate


@dataclass
class Update:
    """What :meth:`OnlineUpdater.poll` hands the pipeline between batches: a model to swap
    in (or None: same model) and keys' recent scores under the model that will score them,
    from which those keys' thresholds restart."""

    model: Detector | None
    calibration: dict[str, np.ndarray]
    rescale: dict[str, Rescale] = field(default_factory=dict)

    def apply(self, pipeline: Pipeline) -> None:
        """Re-scale keys, then swap the model in or re-learn the keys' thresholds on the
        current one."""
        for key, change in self.rescale.items():
            pipeline.rescale(key, change)
        if self.model is not None:
            pipeline.swap(self.model, self.calibration)
        elif self.calibration:  # keys taken as a new normal: their first scores of it
            pipeline.recalibrate(self.calibration, lent=True)


class OnlineUpdater:
    """``rounds=False``: keys are re-scaled and thresholds re-learnt, but no model is
    trained (a daemon that follows the models another process announces)."""

    def __init__(self, config: Config, live: Detector, store: ModelStore | None = None,
                 background: bool = False, seed: int = 0, rounds: bool = True) -> None:
        self.config, self.cfg, self._live = config, config.updater, live
        self.pipeline: Pipeline | None = None  # once attached, its model is the live one
        self.store, self.background, self.seed = store, background, seed
        self.trains = rounds
        self.buffer = self._empty_buffer()
        self.drift = drift_detector(self.cfg.triggers.drift)
        # the newest rounds and re-scales, for reports (a daemon runs for months)
        self.rounds: deque[Round] = deque(maxlen=HISTORY)
        self.rounds_run = 0
        self.windows_seen = 0
        self._since_round = 0
        self._last_round_at: float | None = None
        self._first_ts: float | None = None
        self._manual = False
        self._drift = False
        self._ready: Update | None = None
        self._alarm_since: dict[str, float] = {}
        self._rescale_tried: dict[str, float] = {}
        self._alarm_windows: dict[str, int] = {}  # windows seen since the key's alarm began
        self._rescales: dict[str, Rescale] = {}
        self._held: set[str] = set()  # alarms an operator rejected: incidents, never learnt
        self._admitted: set[str] = set()  # alarms taken as a new normal: no longer incidents
        self.rescaled: deque[dict[str, Any]] = deque(maxlen=HISTORY)  # key, time, channels
        self._relearn: set[str] = set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def live(self) -> Detector:
        """The model scoring now: the attached pipeline's (one reference, not two)."""
        return self.pipeline.detector if self.pipeline is not None else self._live

    def attach(self, pipeline: Pipeline) -> None:
        """Learn from ``pipeline``'s scored windows; its model is the live one."""
        self.pipeline = pipeline
        pipeline.on_windows = self.observe

    def state_dict(self) -> dict[str, np.ndarray]:
        """What a checkpoint keeps: the replay buffer, and where each key's alarm stands
        for the updater (since when, and whether an operator rejected it or it was taken
        as a new normal: an operator's reject must outlive a restart)."""
        keys = sorted(self._alarm_since)
        return {**self.buffer.state_dict(),
                "alarms.keys": np.array(keys, dtype=str),
                "alarms.since": np.array([self._alarm_since[k] for k in keys], np.float64),
                "alarms.windows": np.array([self._alarm_windows.get(k, 0) for k in keys],
                                           np.int64),
                "alarms.held": np.array(sorted(self._held), dtype=str),
                "alarms.admitted": np.array(sorted(self._admitted), dtype=str)}

    def _empty_buffer(self) -> ReplayBuffer | KeyedReplayBuffer:
        b, live = self.cfg.buffer, self._live
        kind = KeyedReplayBuffer if b.scope == "per-key" else ReplayBuffer
        return kind(live.window, len(live.channels), b.recent, b.reservoir, b.quarantine,
                    self.seed)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Start again from :meth:`state_dict` (empty: from nothing, as a daemon replaying
        from a point before its first checkpoint must); checkpoints from before the alarms
        were kept restore the buffer alone, and a buffer saved with another
        ``buffer.scope`` is left empty (logged)."""
        self.buffer = self._empty_buffer()
        keys = np.asarray(state.get("alarms.keys", [])).astype(str).tolist()
        self._alarm_since = dict(zip(keys, np.asarray(state.get("alarms.since", []),
                                                      float).tolist()))
        self._alarm_windows = dict(zip(keys, np.asarray(state.get("alarms.windows", []),
                                                        np.int64).tolist()))
        self._held = set(np.asarray(state.get("alarms.held", [])).astype(str).tolist())
        self._admitted = set(np.asarray(state.get("alarms.admitted", [])).astype(str).tolist())
        for pending in (self._rescale_tried, self._rescales, self._relearn):
            pending.clear()
        buffer = {k: v for k, v in state.items() if not k.startswith("alarms.")}
        if not buffer:
            return
        try:
            self.buffer.load_state_dict(buffer)
        except (KeyError, ValueError) as exc:
            log.warning("replay buffer in the checkpoint does not fit updater.buffer.scope=%s "
                        "(%s); starting with an empty buffer", self.cfg.buffer.scope, exc)

    def export_alarms(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Where these keys' alarms stand for the updater (JSON-ready), for the daemon
        their partition moves to: an operator's reject must follow the key."""
        return {k: {"since": self._alarm_since.get(k), "windows": self._alarm_windows.get(k, 0),
                    "held": k in self._held, "admitted": k in self._admitted}
                for k in keys if k in self._alarm_since or k in self._held}

    def import_alarms(self, alarms: dict[str, dict[str, Any]]) -> None:
        """Take over :meth:`export_alarms` of keys whose partition moved here."""
        self._forget_alarms(alarms)
        for key, alarm in alarms.items():
            if alarm.get("since") is not None:
                self._alarm_since[key] = float(alarm["since"])
                self._alarm_windows[key] = int(alarm.get("windows", 0))
            if alarm.get("held"):
                self._held.add(key)
            if alarm.get("admitted"):
                self._admitted.add(key)

    def forget(self, keys: Iterable[str]) -> None:
        """Keys whose partition moved to another daemon: their alarm state and their
        windows held from alarms go (an admit of every key here must not learn another
        daemon's incident); their normal windows stay as training data."""
        keys = list(keys)
        self._forget_alarms(keys)
        for key in keys:
            self.buffer.discard(key)

    def _forget_alarms(self, keys: Iterable[str]) -> None:
        for key in keys:
            for held in (self._alarm_since, self._alarm_windows, self._rescale_tried):
                held.pop(key, None)
            self._held.discard(key)
            self._admitted.discard(key)

    # ---------------------------------------------------------------- inputs
    def observe(self, windows: np.ndarray, keys: np.ndarray, ts: np.ndarray,
                scores: np.ndarray, protected: np.ndarray,
                novelty: np.ndarray | None = None) -> None:
        """The pipeline's window hook."""
        self.buffer.add(windows, keys, ts, protected, novelty)
        self._persistent_alarms(keys, ts, protected)
        self.windows_seen += len(windows)
        self._since_round += len(windows)
        if self._first_ts is None and len(ts):
            self._first_ts = float(ts[0])
        if self.drift is not None and self.trains:
            # calibrated scores are standardised log errors: light enough tails that a
            # single large window is not taken for a change of level
            for value in scores[~protected]:
                self.drift.update(float(value))
                if self.drift.drift_detected:
                    self._drift = True

    def _persistent_alarms(self, keys: np.ndarray, ts: np.ndarray,
                           protected: np.ndarray) -> None:
        """A key whose windows stay protected for ``rescale_after`` may be a recalibrated
        sensor (:meth:`_try_rescale`); one protected for ``admit_after`` has a new normal,
        not an anomaly: admit its quarantined windows and ask for a round. Keys whose
        alarm an operator rejected do neither."""
        for key, t, guard in zip(keys, ts, protected):
            if not guard:
                self._alarm_since.pop(key, None)
                self._rescale_tried.pop(key, None)
                self._alarm_windows.pop(key, None)
                if key in self._admitted:  # the rest of an alarm taken as a new normal
                    self._admitted.discard(key)
                    self.buffer.admit(key)
                if key in self._held:  # the rejected incident is over: none of it stays
                    self._held.discard(key)
                    self.buffer.discard(key)
            else:
                self._alarm_since.setdefault(key, float(t))
                self._alarm_windows[key] = self._alarm_windows.get(key, 0) + 1
        if not len(ts):
            return
        now = float(ts.max())
        if self.cfg.relearn.rescale_after:
            enough = self._rescale_least() + self._straddle()
            for key, since in list(self._alarm_since.items()):
                tried = self._rescale_tried.get(key, since)
                # first as soon as rescale_after has passed and the alarm has enough
                # windows to tell; not explained: again after another rescale_after
                if (now - tried >= self.cfg.relearn.rescale_after and key not in self._rescales
                        and key not in self._held
                        and self._alarm_windows.get(key, 0) >= enough):
                    self._rescale_tried[key] = now
                    self._try_rescale(key, since, now)
        if not self.cfg.relearn.admit_after:
            return
        for key, since in self._alarm_since.items():
            if key in self._held:
                continue
            if now - since >= self.cfg.relearn.admit_after and self.buffer.admit(key):
                log.info("key %s in alarm since %.0f: taking it as a new normal", key, since)
                self._drift = True
                self._relearn.add(key)
                self._admitted.add(key)
                self._alarm_since[key] = now  # still in alarm after another admit_after: again

    def _try_rescale(self, key: str, since: float, now: float) -> None:
        """Take a key's alarm for a recalibration if new scaling of its moved channels
        makes the alarm's windows score like its normal ones (:mod:`rescale`)."""
        hop = self.config.window.hop
        # the alarm's windows, none that straddle its start; at least threshold.init_points
        # points of them, and up to RESCALE_SPAN times that (a retry sees more of it)
        least, straddle = self._rescale_least(), self._straddle()
        alarm = self.buffer.quarantined_of(key, since)[straddle:][-RESCALE_SPAN * least:]
        if len(alarm) < least:
            return
        # levels to map onto: the key's own normal before the alarm, less the windows just
        # before it opened (already changed, not yet in alarm); a key with too little of
        # it: the training normal its scaling describes
        normal = self.buffer.newest_of(key, RESCALE_SPAN * least, before=since)[:-2 * straddle]
        # scoring like normal: like the model's held-out training windows (the key's
        # recent windows outside alarms may hold the start of this or another change)
        change, tried = search(self.live, alarm, normal if len(normal) >= 16 else None,
                               self.live.calibration.sample_for(key), hop,
                               self.live.calibration.novelty_seeds.get(key))
        if change is None:
            if tried:
                log.info("key %s in alarm since %.0f: re-scaling does not explain it (%s); "
                         "left in alarm", key, since, "; ".join(tried))
            return
        names = [c for c, m in zip(self.live.channels, change.moved) if m]
        log.info("key %s in alarm since %.0f: a recalibration, re-scaled (%s); the alarm "
                 "stays an event", key, since, tried[-1])
        self.buffer.discard(key)  # in the old scaling: never admitted as normal
        self._alarm_since.pop(key, None)
        self._alarm_windows.pop(key, None)
        self._rescales[key] = change
        self.rescaled.append({"key": key, "at": now, "since": since, "channels": names})

    def _rescale_least(self) -> int:
        """Fewest alarm windows a re-scale is judged on: threshold.init_points worth."""
        return max(16, -(-self.config.threshold.init_points // self.config.window.hop))

    def _straddle(self) -> int:
        """Windows that hold points from before an alarm's start."""
        return -(-self.live.window // self.config.window.hop)

    def admit(self, key: str | None = None) -> int:
        """Operator's word that a key's quarantined windows (or every key's) are normal:
        they join the buffer, and so does the rest of the key's alarm if one is going on
        (the gate no longer holds candidates to it). Overrides an earlier reject. Returns
        the windows admitted."""
        keys = [key] if key is not None else list(self._alarm_since)
        self._held.difference_update(keys)
        self._admitted.update(k for k in keys if k in self._alarm_since)
        return self.buffer.admit(key)

    def reject(self, key: str | None = None) -> int:
        """Operator's word that a key's alarm (or every current one) is an incident: its
        quarantined windows are dropped and, until the alarm ends, the key is neither
        admitted as a new normal nor re-scaled. Returns the windows dropped."""
        keys = [key] if key is not None else list(self._alarm_since)
        self._held.update(keys)
        return sum(len(self.buffer.discard(k)[0]) for k in keys)

    def request(self) -> None:
        """Manual trigger (CLI or control message)."""
        self._manual = True

    # ---------------------------------------------------------------- rounds
    def _reason(self, now: float) -> str | None:
        if not self.trains or len(self.buffer) < self.cfg.triggers.min_windows:
            return None
        if self._manual:
            return "manual"
        if self._last_round_at is not None and now - self._last_round_at < self.cfg.triggers.cooldown:
            return None
        if self._drift:
            return "drift"
        if self.cfg.triggers.every_points and self._since_round >= self.cfg.triggers.every_points:
            return "schedule (windows)"
        start = self._last_round_at if self._last_round_at is not None else self._first_ts
        if self.cfg.triggers.every and start is not None and now - start >= self.cfg.triggers.every:
            return "schedule (time)"
        return None

    def poll(self, now: float) -> Update | None:
        """Between batches: start a round if one is due; return an :class:`Update` when a
        round has produced a model or keys taken as a new normal need new thresholds."""
        ready = self._take_ready()
        running = self._thread is not None and self._thread.is_alive()
        # a model accepted in the background is live once the caller applies it: a round
        # due now starts at the next poll, from that model
        reason = None if running or ready is not None else self._reason(now)
        if reason:
            self._manual = self._drift = False
            self._since_round = 0
            self._last_round_at = now
            args = (self.live, self._snapshot(), now, reason)
            if self.background:
                self._thread = threading.Thread(target=self._round, args=args,
                                                name="streamae-updater", daemon=True)
                self._thread.start()
            else:
                self._round(*args)
                ready = ready or self._take_ready()
        relearn, self._relearn = self._relearn, set()
        rescale, self._rescales = self._rescales, {}
        if ready is not None:
            ready.rescale = rescale
            return ready
        if rescale and not relearn:
            return Update(None, {}, rescale)
        # a new normal: only its newest scores, which the change dominates
        points = self.config.threshold.init_points
        calibration = (self._calibration(self.live, self._newest(relearn, points))
                       if relearn else {})
        if calibration:
            log.info("thresholds of %s re-learn on their new normal",
                     ", ".join(sorted(calibration)))
        return Update(None, calibration, rescale) if calibration or rescale else None

    def _take_ready(self) -> Update | None:
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None and self.pipeline is None:
            self._live = ready.model
        return ready

    def _snapshot(self) -> Snapshot:
        """What a round learns from, copied on the scoring thread: the background round
        never reads the buffer, which the scoring thread goes on filling."""
        windows, ts, keys, novelty = self.buffer.keyed_windows()
        n_hold = max(1, int(len(windows) * self.cfg.gate.holdout_fraction))
        return Snapshot(windows, ts, keys, novelty, n_hold, self.buffer.newest(4 * n_hold),
                        self._newest(self.buffer.keys(), self.cfg.relearn.calibration_points),
                        self.buffer.quarantined(4 * n_hold, besides=self._admitted))

    def _round(self, live: Detector, snap: Snapshot, now: float, reason: str) -> None:
        try:
            self._try_round(live, snap, now, reason)
        except Exception as exc:  # a failed round must never stop scoring
            log.exception("update round failed")
            self._record(Round(now, reason, False, reasons=[f"error: {exc}"]))

    def _record(self, result: Round) -> None:
        self.rounds.append(result)
        self.rounds_run += 1

    def _try_round(self, live: Detector, snap: Snapshot, now: float, reason: str) -> None:
        windows, ts, keys, n_hold = snap.windows, snap.ts, snap.keys, snap.held
        train, holdout = windows[:-n_hold], windows[-n_hold:]
        candidate, report = fine_tune(live, train, self.cfg.finetune, self.seed + self.rounds_run,
                                      train=self.config.train)
        # a new version scores on its own calibration: fitted on the held-out windows
        held_keys = keys[-n_hold:]
        order = np.argsort(held_keys.astype(str), kind="stable")  # each key's in time order
        candidate = candidate.recalibrated(holdout[order], held_keys[order],
                                           snap.novelty[-n_hold:][order])
        verdict = validate(live, candidate, holdout, snap.recent, self.cfg.gate,
                           self.config.threshold, snap.quarantined)
        result = Round(now, reason, verdict.accepted, candidate.version, verdict.reasons,
                       {**verdict.metrics, "seconds": report.seconds,
                        "windows_per_s": report.windows_per_s})
        self._record(result)
        if not verdict.accepted:
            log.warning("candidate %s rejected (%s): %s", candidate.version, reason,
                        "; ".join(verdict.reasons))
            return
        calibration = self._calibration(candidate, snap.newest)
        candidate.info = {**candidate.info, "parent": live.version, "trigger": reason,
                          "data_range": [float(ts.min()), float(ts.max())]}
        if self.store is not None:
            self.store.add(candidate, live.version, result.metrics, [float(ts.min()),
                                                                    float(ts.max())], reason)
            self.store.promote(candidate.version)
        log.info("candidate %s accepted (%s); swapping in", candidate.version, reason)
        with self._lock:
            self._ready = Update(candidate, calibration)

    def _newest(self, keys: Iterable[str], points: int
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each key's newest windows covering ``points`` points (as far as the buffer holds
        them), oldest first, with their novelty distances; keys with fewer than
        ``threshold.init_points`` are left out."""
        hop = self.config.window.hop
        per_key = -(-max(points, self.config.threshold.init_points) // hop) + 1
        out = {}
        for key in list(keys):
            mine = self.buffer.newest_of(key, per_key)
            if len(mine) * hop >= self.config.threshold.init_points:
                out[key] = mine, self.buffer.novelty_of(key, per_key)
        return out

    def _calibration(self, model: Detector, newest: dict[str, tuple[np.ndarray, np.ndarray]]
                     ) -> dict[str, np.ndarray]:
        """Each key's point scores under ``model`` on its newest windows (with the novelty
        they had, as the pipeline will score with it)."""
        hop = self.config.window.hop
        c = len(model.channels)
        return {key: model.score(mine, batch_size=1024, novelty=(
                    novelty, np.zeros((len(mine), c), np.float32)))[0][:, -hop:].ravel()
                for key, (mine, novelty) in newest.items()}

    def summary(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in list(self.rounds)]  # a round may be adding
