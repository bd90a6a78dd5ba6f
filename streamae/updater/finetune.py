"""Fine-tuning a live model on replay-buffer windows, on GPU when there is one.

Transfer-learning settings (``updater`` config): freeze the encoder or its first k
layers; pretrained encoder layers learn ``encoder_lr_scale`` times slower than the
decoder (per-layer parameter groups); a learning rate well below the pretraining one;
early stopping on the newest windows (after ``patience`` epochs without gain); a
wall-time budget per round. The windows move to the device once per round and batches
are gathered there, so data movement does not bound a GPU round. Transformers train
under bf16 autocast on CUDA.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from streamae.config import UpdaterConfig
from streamae.models.detector import Detector
from streamae.models.train import pick_device

log = logging.getLogger(__name__)
_ENCODER = re.compile(r"^(input\.|enc_pos$|encoder\.|to_latent\.)")
_LAYER = re.compile(r"^encoder\.(?:layers\.(\d+)\.|\w+_l(\d+)(?:_|$))")


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


def parameter_groups(model: torch.nn.Module, cfg: UpdaterConfig) -> list[dict[str, Any]]:
    """Encoder and decoder parameter groups with their learning rates; frozen parameters
    get ``requires_grad = False`` and no group."""
    encoder, decoder, frozen = [], [], []
    for name, param in model.named_parameters():
        is_encoder = bool(_ENCODER.match(name))
        layer = _LAYER.match(name)
        index = int(next(g for g in layer.groups() if g is not None)) if layer else None
        freeze = is_encoder and (cfg.freeze_encoder or (
            index is not None and index < cfg.freeze_layers) or (
            cfg.freeze_layers > 0 and name.startswith(("input.", "enc_pos"))))
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


def fine_tune(detector: Detector, windows: np.ndarray, cfg: UpdaterConfig,
              seed: int = 0, val_fraction: float = 0.1) -> tuple[Detector, FinetuneReport]:
    """A candidate: a copy of ``detector`` fine-tuned on ``windows`` (``(n, W, C)``,
    scaled, oldest first). The live detector is not touched."""
    device = pick_device(cfg.device)
    model = copy.deepcopy(detector.model).to(device)
    groups = parameter_groups(model, cfg)
    opt = torch.optim.Adam([g for g in groups if g["params"]])
    torch.manual_seed(seed)
    data = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    data = data.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else data
    n_val = max(1, int(len(data) * val_fraction)) if len(data) >= 20 and val_fraction > 0 else 0
    train, val = data[: len(data) - n_val], data[len(data) - n_val:]
    bf16 = device.type == "cuda" and detector.model_config.kind == "transformer"
    gen = torch.Generator(device=device).manual_seed(seed)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best = initial = _loss(model, val, bf16) if n_val else math.inf
    start, seen, stopped, train_loss, epochs = time.perf_counter(), 0, "epochs", math.nan, 0
    stale = 0  # epochs since the best one
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen, device=device)
        total = torch.zeros((), device=device)
        for i in range(0, len(train), cfg.batch_size):
            batch = train[order[i: i + cfg.batch_size]]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                recon, reg = model(batch)
                loss = torch.mean((recon.float() - batch) ** 2) + reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(batch)
            seen += len(batch)
            if time.perf_counter() - start > cfg.time_budget:
                stopped = "time budget"
                break
        epochs = epoch + 1
        train_loss = float(total) / max(len(train), 1)
        val_loss = _loss(model, val, bf16) if n_val else train_loss
        if val_loss < best:
            best, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif n_val:
            stale += 1
            if stale >= cfg.patience:
                stopped = "early stopping"
                break
        if stopped == "time budget":
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    model = model.to("cpu").eval()
    for p in model.parameters():
        p.requires_grad_(True)
    # the scaling is part of the model: the same weights on new sensors are a new version
    digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes()
                                     for t in model.state_dict().values())
                            + json.dumps(detector.scaler.to_json()).encode()).hexdigest()[:10]
    candidate = Detector(model, detector.model_config, detector.scaler, detector.window,
                         list(detector.channels), f"{detector.model_config.kind}-{digest}",
                         {**detector.info, "parent": detector.version,
                          "finetune": {"windows": len(windows), "epochs": epochs}})
    report = FinetuneReport(device.type, len(windows), epochs, seconds,
                            seen / seconds if seconds > 0 else math.nan, train_loss, best,
                            stopped, best < initial, {g["name"]: {"lr": g["lr"], "tensors": len(g["params"])}
                                      for g in groups})
    log.info("fine-tuned %s -> %s on %d windows (%s, %.1f s, %.0f windows/s, %s)",
             detector.version, candidate.version, len(windows), device.type, seconds,
             report.windows_per_s, stopped)
    return candidate, report


@torch.no_grad()
def _loss(model: torch.nn.Module, windows: torch.Tensor, bf16: bool,
          batch: int = 4096) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(windows), batch):
        x = windows[i: i + batch]
        with torch.autocast(windows.device.type, dtype=torch.bfloat16, enabled=bf16):
            recon, _ = model(x)
        total += float(torch.sum((recon.float() - x) ** 2)) / x[0].numel()
    return total / max(len(windows), 1)
