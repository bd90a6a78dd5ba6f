"""A trained detector: autoencoder + scaler + window shape, with safe checkpoints.

A checkpoint is a directory with ``model.safetensors`` (weights only: nothing is
unpickled on load) and ``meta.json`` (format, config that rebuilds the module, channel
names, scaler state, version, training summary). It is written atomically.
"""

from __future__ import annotations

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
from safetensors.torch import load_file, save_file

from streamae import __version__
from streamae.config import MODEL_CONFIGS, Config, LSTMConfig, TransformerConfig, _build
from streamae.errors import ModelError
from streamae.models.base import SequenceAutoencoder
from streamae.models.dataset import training_windows
from streamae.models.registry import build_model
from streamae.models.scaler import Scaler
from streamae.models.train import EpochReport, fit
from streamae.types import Frame

FORMAT = "streamae.model/1"


@dataclass
class Detector:
    """Everything needed to score windows of one channel layout."""

    model: SequenceAutoencoder
    model_config: LSTMConfig | TransformerConfig
    scaler: Scaler
    window: int
    channels: list[str]
    version: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def score(self, windows: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Squared reconstruction error of scaled windows ``(B, W, C)``.

        Returns the per-step score (mean over channels, ``(B, W)``) and the per-channel
        error ``(B, W, C)`` used for attribution.
        """
        self.model.eval()
        err = np.empty(windows.shape, dtype=np.float32)
        for i in range(0, len(windows), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(windows[i: i + batch_size]))
            recon, _ = self.model(x)
            err[i: i + len(x)] = ((recon - x) ** 2).numpy()
        return err.mean(axis=2), err

    @torch.no_grad()
    def embed(self, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Latent vectors ``(B, latent)`` of scaled windows."""
        self.model.eval()
        out = [self.model.encode(torch.from_numpy(np.ascontiguousarray(windows[i: i + batch_size])))
               for i in range(0, len(windows), batch_size)]
        return torch.cat(out).numpy()

    def save(self, directory: str | Path) -> Path:
        """Write the checkpoint atomically (a reader never sees half a model)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        weights = tmp / "model.safetensors"
        save_file({k: v.detach().contiguous() for k, v in self.model.state_dict().items()},
                  str(weights))
        meta = {
            "format": FORMAT,
            "streamae_version": __version__,
            "version": self.version,
            "model": {**vars(self.model_config)},
            "window": self.window,
            "channels": self.channels,
            "scaler": self.scaler.to_json(),
            "weights_sha256": file_sha256(weights),
            "info": self.info,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = directory.parent / f".{directory.name}.old-{os.getpid()}"
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
        return directory

    @staticmethod
    def load(directory: str | Path) -> Detector:
        """Load a checkpoint written by :meth:`save`; weights are checked against meta."""
        directory = Path(directory)
        meta_path, weights = directory / "meta.json", directory / "model.safetensors"
        if not meta_path.exists() or not weights.exists():
            raise ModelError(f"{directory} is not a streamae model (needs meta.json and "
                             f"model.safetensors); train one with 'streamae train'")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"{meta_path}: corrupt metadata: {exc}") from None
        if meta.get("format") != FORMAT:
            raise ModelError(f"{directory}: unsupported model format {meta.get('format')!r}; "
                             f"this streamae reads {FORMAT}")
        if file_sha256(weights) != meta.get("weights_sha256"):
            raise ModelError(f"{weights}: checksum does not match meta.json; refusing to load")
        kind = meta["model"].get("kind")
        if kind not in MODEL_CONFIGS:
            raise ModelError(f"{directory}: unknown model kind {kind!r}")
        model_config = _build(MODEL_CONFIGS[kind], meta["model"], "model")
        model = build_model(model_config, meta["window"], len(meta["channels"]))
        model.load_state_dict(load_file(str(weights)))
        model.eval()
        return Detector(model, model_config, Scaler.from_json(meta["scaler"]), meta["window"],
                        list(meta["channels"]), meta.get("version", ""), meta.get("info", {}))


def train_detector(frame: Frame, config: Config,
                   on_epoch: Callable[[EpochReport], None] | None = None,
                   on_step: Callable[[int], None] | None = None) -> Detector:
    """Fit scaler and autoencoder on the rows of ``frame`` (labels are never used)."""
    torch.set_num_threads(config.scoring.threads)
    scaler = Scaler.fit(frame)
    windows = training_windows(frame, scaler, config.window.size, config.train.stride,
                               config.train.max_windows)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, config.window.size, len(frame.channels))
    result = fit(model, windows, config.train, on_epoch=on_epoch, on_step=on_step)
    start, stop = float(frame.timestamps.min()), float(frame.timestamps.max())
    digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes()
                                     for t in model.state_dict().values())).hexdigest()[:10]
    info = {
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": len(frame), "keys": len(scaler.per_key), "windows": result.windows,
        "time_range": [start, stop], "epochs": len(result.epochs),
        "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
        "stopped_early": result.stopped_early, "train": vars(config.train),
    }
    return Detector(model, config.model, scaler, config.window.size, list(frame.channels),
                    f"{config.model.kind}-{digest}", info)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
