"""Fine-tuning a live model on replay-buffer windows, on GPU when there is one.

Transfer-learning settings (``updater`` config): freeze the encoder or its first k
layers; pretrained encoder layers learn ``encoder_lr_scale`` times slower than the
decoder (per-layer parameter groups, for every member of an ensemble); a learning rate
well below the pretraining one; early stopping on the newest windows (after ``patience``
epochs without gain); a wall-time budget per round. The loop itself is the one training
loop (:func:`streamae.models.train.fit`): windows move to the device once per round,
transformers train under bf16 autocast on CUDA.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from streamae.config import FineTuneConfig, TrainConfig
from streamae.models.detector import Detector
from streamae.models.train import fit

log = logging.getLogger(__name__)
_MEMBER = r"^(?:members\.\d+\.)?"
_ENCODER = re.compile(_MEMBER + r"(input\.|enc_pos$|encoder\.|to_latent\.)")
_LAYER = re.compile(_MEMBER + r"encoder\.(?:layers\.(\d+)\.|\w+_l(\d+)(?:_|$))")


@dataclass
class FinetuneReport:
    device: str
    windows: int
    epochs: int
    seconds: float
    windows_per_s: float
    train_loss: float
    val_loss: float
    stopped: str
    improved: bool
    groups: dict[str, Any] = field(default_factory=dict)


def parameter_groups(model: torch.nn.Module, cfg: FineTuneConfig) -> list[dict[str, Any]]:
    """Encoder and decoder parameter groups with their learning rates; frozen parameters
    get ``requires_grad = False`` and no group."""
    encoder, decoder, frozen = [], [], []
    for name, param in model.named_parameters():
        is_encoder = bool(_ENCODER.match(name))
        layer = _LAYER.match(name)
        index = int(next(g for g in layer.groups() if g is not None)) if layer else None
        if index is None and re.sub(_MEMBER, "", name).startswith("encoder."):
            index = 0  # a single-layer encoder (the linear autoencoder's)
        bare = re.sub(_MEMBER, "", name)
        freeze = is_encoder and (cfg.freeze_encoder or (
            index is not None and index < cfg.freeze_layers) or (
            cfg.freeze_layers > 0 and bare.startswith(("input.", "enc_pos"))))
        param.requires_grad_(not freeze)
        (frozen if freeze else encoder if is_encoder else decoder).append(name)
    named = dict(model.named_parameters())
    groups = [{"params": [named[n] for n in decoder], "lr": cfg.lr, "name": "decoder"}]
    if encoder:
        groups.append({"params": [named[n] for n in encoder], "lr": cfg.lr * cfg.encoder_lr_scale,
                       "name": "encoder"})
    log.debug("fine-tune groups: %d decoder, %d encoder, %d frozen tensors", len(decoder),
              len(encoder), len(frozen))
    return groups


def held_out_count(n: int, val_fraction: float = 0.1) -> int:
    """How many of ``n`` windows :func:`fine_tune` holds out to early-stop on."""
    return max(1, int(n * val_fraction)) if n >= 20 and val_fraction > 0 else 0


def fine_tune(detector: Detector, windows: np.ndarray, cfg: FineTuneConfig,
              seed: int = 0, val_fraction: float = 0.1, train: TrainConfig | None = None,
              on_step: Callable[[int], None] | None = None
              ) -> tuple[Detector, FinetuneReport]:
    """A candidate: a copy of ``detector`` fine-tuned on ``windows`` (``(n, W, C)``,
    scaled, oldest first; the newest ``val_fraction`` early-stops it) by the training loop
    every model shares, with the updater's learning rates and budget. The live detector is
    not touched; the candidate keeps the live calibration until it is recalibrated.
    ``on_step``: called with each batch's window count (a progress bar)."""
    model = copy.deepcopy(detector.model)
    groups = parameter_groups(model, cfg)
    n_val = held_out_count(len(windows), val_fraction)
    settings = dataclasses.replace(
        train or TrainConfig(), epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        patience=cfg.patience, min_epochs=1, lr_schedule="constant",
        time_budget=cfg.time_budget, device=cfg.device, seed=seed)
    # members with a closed form (the linear autoencoder) are refitted on the new windows,
    # unless the encoder is to stay fixed; the others learn by gradient
    closed = not cfg.freeze_encoder and not cfg.freeze_layers
    # codes reach as far as every window given, the newest (held out above) included:
    # the buffer holds normal windows only, and its newest are the normal to accept
    result = fit(model, windows[: len(windows) - n_val], windows[len(windows) - n_val:],
                 settings, param_groups=groups, closed_form=closed, reach=windows,
                 on_step=on_step)
    # the scaling is part of the model: the same weights on new sensors are a new version
    digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes()
                                     for t in model.state_dict().values())
                            + json.dumps(detector.scaler.to_json()).encode()).hexdigest()[:10]
    candidate = dataclasses.replace(
        detector, model=model, version=f"{detector.model_config.kind}-{digest}",
        info={**detector.info, "parent": detector.version,
              "finetune": {"windows": len(windows), "epochs": len(result.epochs)}})
    seconds = result.seconds
    seen = sum(len(windows) - n_val for _ in result.epochs)
    report = FinetuneReport(result.device, len(windows), len(result.epochs), seconds,
                            seen / seconds if seconds > 0 else math.nan,
                            result.epochs[-1].train_loss if result.epochs else math.nan,
                            result.best_val_loss,
                            result.stopped if result.epochs else "closed form",
                            result.best_val_loss < result.initial_val_loss,
                            {g["name"]: {"lr": g["lr"], "tensors": len(g["params"])}
                             for g in groups})
    log.info("fine-tuned %s -> %s on %d windows (%s, %.1f s, %.0f windows/s, %s)",
             detector.version, candidate.version, len(windows), result.device, seconds,
             report.windows_per_s, result.stopped)
    return candidate, report
