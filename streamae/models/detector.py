"""A trained detector: autoencoder + scaler + calibration + window shape, with safe
checkpoints.

A checkpoint is a directory with ``model.safetensors`` (weights only: nothing is
unpickled on load), ``calibration.safetensors`` (the score calibration's arrays) and
``meta.json`` (format, config that rebuilds the module, channel names, scaler state,
calibration settings, version, training summary, checksums). It is written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_arrays
from safetensors.numpy import save_file as save_arrays
from safetensors.torch import load_file, save_file

from streamae import __version__, atomic, novelty
from streamae.config import (MODEL_CONFIGS, Config, ModelConfig, config_to_dict,
                             model_config_from_dict)
from streamae.errors import ModelError
from streamae.models.base import SequenceAutoencoder
from streamae.models.calibration import Calibration
from streamae.models.dataset import Split, dominant_period, training_windows
from streamae.models.registry import build_model
from streamae.models.scaler import Scaler
from streamae.models.train import EpochReport, TrainResult, fit
from streamae.novelty import NoveltySettings
from streamae.types import Frame

FORMAT = "streamae.model/2"
FILES = ("model.safetensors", "calibration.safetensors")


def check_model_out(directory: str | Path) -> None:
    """Refuse a model destination that holds something other than a streamae model (a
    file, or a non-empty folder without ``meta.json``): saving there would delete it."""
    path = Path(directory)
    if path.is_file() or path.is_symlink() and not path.is_dir():
        raise ModelError(f"{path} is an existing file, not a model directory: saving the "
                         "model there would delete it; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not (path / "meta.json").is_file():
        raise ModelError(f"{path} is a folder holding other files, not a streamae model: "
                         "saving the model there would delete them; choose another --out "
                         "(an empty or new folder, or an earlier model to replace)")


@dataclass
class Detector:
    """Everything needed to score windows of one channel layout."""

    model: SequenceAutoencoder
    model_config: ModelConfig
    scaler: Scaler
    window: int
    channels: list[str]
    calibration: Calibration
    version: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def errors(self, windows: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Raw squared errors ``(heads, B, W, C)`` of scaled windows ``(B, W, C)``."""
        return self.errors_of(self.model, windows, batch_size)

    @staticmethod
    @torch.no_grad()
    def errors_of(model: SequenceAutoencoder, windows: np.ndarray,
                  batch_size: int = 1024) -> np.ndarray:
        model.eval()
        parts = [model.errors(torch.from_numpy(np.ascontiguousarray(
            windows[i: i + batch_size], dtype=np.float32))).numpy()
            for i in range(0, len(windows), batch_size)]
        if not parts:
            return np.zeros((len(model.heads), 0, *windows.shape[1:]), dtype=np.float32)
        return np.concatenate(parts, axis=1)

    def score(self, windows: np.ndarray, batch_size: int = 64, newest: int | None = None,
              novelty: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated anomaly score per step ``(B, W)`` of scaled windows ``(B, W, C)`` and
        each channel's contribution ``(B, W, C)`` (for attribution); with ``newest`` only
        for the newest that many steps (nan before). ``novelty``: the windows' novelty
        distances and channel shares (:mod:`streamae.novelty`), where their keys have
        them."""
        return self.calibration.score(self.errors(windows, batch_size), newest, novelty)

    @torch.no_grad()
    def embed(self, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Latent vectors ``(B, latent)`` of scaled windows."""
        self.model.eval()
        out = [self.model.encode(torch.from_numpy(np.ascontiguousarray(windows[i: i + batch_size])))
               for i in range(0, len(windows), batch_size)]
        return torch.cat(out).numpy()

    def recalibrated(self, holdout: np.ndarray, keys: np.ndarray,
                     novelty: np.ndarray | None = None) -> Detector:
        """A copy calibrated on ``holdout`` windows (normal, unseen by training; ``keys``
        per window, each key's in time order; ``novelty`` their distances, where known)
        with the same calibration settings: what every new model version gets before it
        scores."""
        return dataclasses.replace(self, calibration=self.calibration.refit(
            self.errors(holdout, 1024), keys, novelty))

    def save(self, directory: str | Path) -> Path:
        """Write the checkpoint atomically (a reader never sees half a model). Only an
        earlier model is replaced: never a file or a folder of other things."""
        directory = Path(directory)
        check_model_out(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file({k: v.detach().contiguous() for k, v in self.model.state_dict().items()},
                  str(tmp / FILES[0]))
        save_arrays(self.calibration.arrays(), str(tmp / FILES[1]))
        meta = {
            "format": FORMAT,
            "streamae_version": __version__,
            "version": self.version,
            "model": config_to_dict(self.model_config),
            "window": self.window,
            "channels": self.channels,
            "scaler": self.scaler.to_json(),
            "calibration": self.calibration.meta(),
            "sha256": {name: file_sha256(tmp / name) for name in FILES},
            "info": self.info,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        for f in tmp.iterdir():
            atomic.fsync_file(f)
        atomic.fsync_dir(tmp)
        old = directory.parent / f".{directory.name}.old-{os.getpid()}"
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        atomic.fsync_dir(directory.parent)
        shutil.rmtree(old, ignore_errors=True)
        return directory

    @staticmethod
    def load(directory: str | Path) -> Detector:
        """Load a checkpoint written by :meth:`save`; files are checked against meta."""
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.exists() or not all((directory / f).exists() for f in FILES):
            raise ModelError(f"{directory} is not a streamae model (needs meta.json, "
                             f"{' and '.join(FILES)}); train one with 'streamae train'")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"{meta_path}: corrupt metadata: {exc}") from None
        if meta.get("format") != FORMAT:
            raise ModelError(f"{directory}: unsupported model format {meta.get('format')!r}; "
                             f"this streamae reads {FORMAT}: train the model again")
        for name in FILES:
            if file_sha256(directory / name) != meta.get("sha256", {}).get(name):
                raise ModelError(f"{directory / name}: checksum does not match meta.json; "
                                 "refusing to load")
        kind = meta["model"].get("kind")
        if kind not in MODEL_CONFIGS:
            raise ModelError(f"{directory}: unknown model kind {kind!r}")
        model_config = model_config_from_dict(meta["model"])
        model = build_model(model_config, meta["window"], len(meta["channels"]))
        model.load_state_dict(load_file(str(directory / FILES[0])))
        model.eval()
        calibration = Calibration.restore(meta["calibration"],
                                          load_arrays(str(directory / FILES[1])))
        return Detector(model, model_config, Scaler.from_json(meta["scaler"]), meta["window"],
                        list(meta["channels"]), calibration, meta.get("version", ""),
                        meta.get("info", {}))


def resolve_window(frame: Frame, config: Config, scaler: Scaler) -> int:
    """``window.size``, or for ``auto`` the training data's dominant period in bounds."""
    w = config.window
    if w.size != "auto":
        return int(w.size)
    return dominant_period(frame, scaler, w.min_size, w.max_size)


def train_detector(frame: Frame, config: Config,
                   on_epoch: Callable[[EpochReport], None] | None = None,
                   on_step: Callable[[int], None] | None = None,
                   on_start: Callable[[int], None] | None = None) -> Detector:
    """Fit scaler, autoencoder and calibration on the rows of ``frame`` (labels are never
    used): train on each key's older windows, early-stop and calibrate on its newest.
    ``on_start`` hears the number of training windows before the first epoch."""
    torch.set_num_threads(config.scoring.threads)
    scaler = Scaler.fit(frame, config.calibration.input_clip)
    window = resolve_window(frame, config, scaler)
    split = training_windows(frame, scaler, window, config.train.stride,
                             config.train.max_windows, config.train.val_fraction)
    if on_start:
        on_start(len(split.train))
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, window, len(frame.channels))
    result = fit(model, split.train, split.val, config.train, on_epoch=on_epoch,
                 on_step=on_step)
    calibration = fit_calibration(model, frame, scaler, window, split, config)
    detector = Detector(model, config.model, scaler, window, list(frame.channels), calibration)
    start, stop = float(frame.timestamps.min()), float(frame.timestamps.max())
    digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes()
                                     for t in model.state_dict().values())).hexdigest()[:10]
    detector.version = f"{config.model.kind}-{digest}"
    detector.info.update({
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": len(frame), "keys": len(scaler.per_key), "window": window,
        "windows": len(split.train), "holdout_windows": len(split.val), "data_range": [start, stop],
        "training": training_summary(result), "train": config_to_dict(config.train),
    })
    return detector


def fit_calibration(model: SequenceAutoencoder, frame: Frame, scaler: Scaler, window: int,
                    split: Split, config: Config) -> Calibration:
    """The calibration (``config.calibration`` and ``config.novelty``) of ``model`` on the
    held-out windows of ``split`` (made from ``frame``), or on its training windows when
    no key could spare any."""
    settings = novelty_settings(config)
    if len(split.val):
        holdout, keys = split.val, split.val_keys
        distances, seeds = novelty.held_out(frame, scaler, keys, split.val_ends, settings,
                                            window, config.window.hop)
    else:
        holdout, keys = split.train, np.full(len(split.train), "", dtype=object)
        distances, seeds = None, {}
    cal = config.calibration
    groups = getattr(model, "member_heads", [list(range(len(model.heads)))])
    calibration = Calibration.fit(Detector.errors_of(model, holdout), keys, groups,
                                  config.window.hop, cal.aggregate, cal.top_k, cal.smooth,
                                  cal.floor, cal.per_channel, settings, distances)
    calibration.novelty_seeds = seeds
    return calibration


def calibrated(detector: Detector, frame: Frame, config: Config) -> Detector:
    """``detector`` calibrated again with ``config``'s calibration and novelty settings on
    the held-out windows of ``frame``, the rows it was trained on (the model untouched)."""
    split = training_windows(frame, detector.scaler, detector.window, config.train.stride,
                             config.train.max_windows, config.train.val_fraction)
    return dataclasses.replace(detector, calibration=fit_calibration(
        detector.model, frame, detector.scaler, detector.window, split, config))


def novelty_settings(config: Config) -> NoveltySettings:
    """The novelty member a detector trained with ``config`` is calibrated with."""
    n = config.novelty
    return NoveltySettings(n.size, n.steps, n.least, n.weight, n.level)


def training_summary(result: TrainResult) -> dict[str, Any]:
    """What a training run did, JSON-ready (kept in the checkpoint's info)."""
    return {"epochs": len(result.epochs), "best_epoch": result.best_epoch,
            "initial_val_loss": result.initial_val_loss, "best_val_loss": result.best_val_loss,
            "stopped": result.stopped, "seconds": round(result.seconds, 2),
            "device": result.device, "summary": result.summary(),
            "history": [[e.epoch, e.train_loss, e.val_loss] for e in result.epochs]}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def untrained_detector(config: Config, channels: int, window: int | None = None,
                       seed: int = 0) -> Detector:
    """A detector of ``config``'s model kind with untrained weights, unit scaling and a
    calibration fitted on its own errors of random windows. It scores exactly as slowly
    as a trained one: for throughput measurements and tests of the plumbing."""
    window = window or (config.window.size if config.window.size != "auto" else 64)
    torch.manual_seed(seed)
    model = build_model(config.model, window, channels).eval()
    names = [f"c{i}" for i in range(channels)]
    noise = np.random.default_rng(seed).normal(size=(256, window, channels)).astype(np.float32)
    model.fit_closed(noise)
    for p in model.parameters():
        p.requires_grad_(True)
    cal = config.calibration
    groups = getattr(model, "member_heads", [list(range(len(model.heads)))])
    settings = novelty_settings(config)
    series = noise.reshape(-1, channels)  # the windows end to end: one long noisy series
    hop = config.window.hop
    distances, _ = novelty.replay(series, np.arange(window - 1, len(series), hop)[-len(noise):],
                                  settings, window, hop)
    calibration = Calibration.fit(Detector.errors_of(model, noise),
                                  np.full(len(noise), "", dtype=object), groups,
                                  config.window.hop, cal.aggregate, cal.top_k, cal.smooth,
                                  cal.floor, cal.per_channel, settings,
                                  np.resize(distances, len(noise)))
    return Detector(model, config.model, Scaler(np.zeros(channels), np.ones(channels)),
                    window, names, calibration, "untrained")
