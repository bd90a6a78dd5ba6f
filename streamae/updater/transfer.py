"""Transfer learning: adapt a pretrained model to new sensors; use its encoder as a fixed
feature extractor."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from streamae.config import FineTuneConfig
from streamae.errors import InputFormatError
from streamae.models.dataset import key_series, sliding, training_windows
from streamae.models.detector import Detector
from streamae.models.scaler import Scaler
from streamae.types import Frame
from streamae.updater.finetune import FinetuneReport, fine_tune, held_out_count

if TYPE_CHECKING:
    from streamae.jobs import Progress


def finetune_on_frame(pretrained: Detector, frame: Frame, cfg: FineTuneConfig,
                      max_windows: int = 50_000, seed: int = 0, val_fraction: float = 0.2,
                      progress: Progress | None = None) -> tuple[Detector, FinetuneReport]:
    """Fine-tune ``pretrained`` on the rows of a new sensor set. The new sensors get their
    own scaling (learnt from ``frame``) and calibration (each key's newest
    ``val_fraction``, held out); the channel count must match the model's, the names are
    the new data's. ``progress``: a bar over every epoch's windows."""
    if len(frame.channels) != len(pretrained.channels):
        raise InputFormatError(f"the pretrained model has {len(pretrained.channels)} channels "
                               f"({', '.join(pretrained.channels)}); the new data has "
                               f"{len(frame.channels)}")
    scaler = Scaler.fit(frame, pretrained.scaler.clip)
    split = training_windows(frame, scaler, pretrained.window, 1, max_windows, val_fraction)
    adapted = dataclasses.replace(pretrained, scaler=scaler, channels=list(frame.channels),
                                  info=dict(pretrained.info))
    trained = len(split.train) - held_out_count(len(split.train))
    bar = progress("fine-tuning", trained * cfg.epochs) if progress else None
    tuned, report = fine_tune(adapted, split.train, cfg, seed, on_step=bar)
    if len(split.val):  # the new sensors' own normal errors
        tuned = tuned.recalibrated(split.val, split.val_keys)
    return tuned, report


def embed_frame(detector: Detector, frame: Frame, hop: int,
                batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latent features of every window the pipeline would score (one per ``hop`` points
    per key, once the key has a full window): window-end timestamps, keys, ``(n, latent)``."""
    ts_out, key_out, z_out = [], [], []
    w = detector.window
    for key, rows, x in key_series(frame, detector.scaler):
        if len(rows) < w:
            continue
        view = sliding(x, w)
        ends = np.arange(w - 1, len(rows))
        pick = ends[(ends - (w - 1)) % hop == 0]
        z_out.append(detector.embed(np.ascontiguousarray(view[pick - (w - 1)]), batch_size))
        ts_out.append(frame.timestamps[rows][pick])
        key_out.append(np.full(len(pick), key, dtype=object))
    if not z_out:
        raise InputFormatError(f"no key has {w} rows: nothing to embed")
    return np.concatenate(ts_out), np.concatenate(key_out), np.concatenate(z_out)
