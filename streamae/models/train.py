"""Offline training of a sequence autoencoder on windows of normal data."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from streamae.config import TrainConfig
from streamae.models.base import SequenceAutoencoder

log = logging.getLogger(__name__)


def pick_device(setting: str) -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass
class EpochReport:
    """One epoch: mean training loss, validation loss (nan without a split), seconds."""

    epoch: int
    train_loss: float
    val_loss: float
    seconds: float


@dataclass
class TrainResult:
    """What training did: per-epoch losses, the epoch kept and whether it stopped early."""

    epochs: list[EpochReport] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.nan
    stopped_early: bool = False
    windows: int = 0


def fit(model: SequenceAutoencoder, windows: np.ndarray, config: TrainConfig,
        on_epoch: Callable[[EpochReport], None] | None = None,
        on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``model`` in place on ``windows`` (``(n, W, C)`` float32, scaled).

    The newest ``val_fraction`` of windows is held out (a temporal split); training stops
    after ``patience`` epochs without validation gain and restores the best weights. Runs
    on ``config.device`` (CUDA when present by default); the model ends on the CPU.
    """
    if len(windows) < 2:
        raise ValueError("need at least 2 training windows")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = pick_device(config.device)
    data = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    if device.type == "cuda":
        data = data.pin_memory().to(device, non_blocking=True)
    model.to(device)
    n_val = int(len(data) * config.val_fraction) if len(data) >= 20 else 0
    train, val = data[: len(data) - n_val], data[len(data) - n_val:]
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = TrainResult(windows=len(data))
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best, stale = math.inf, 0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=gen).to(device)
        total = torch.zeros((), device=device)
        for i in range(0, len(train), config.batch_size):
            batch = train[order[i: i + config.batch_size]]
            recon, reg = model(corrupt(batch, config, gen))
            loss = torch.mean((recon - batch) ** 2) + reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += loss.detach() * len(batch)
            if on_step:
                on_step(len(batch))
        val_loss = reconstruction_loss(model, val) if n_val else math.nan
        report = EpochReport(epoch, float(total) / len(train), val_loss, time.perf_counter() - start)
        result.epochs.append(report)
        if on_epoch:
            on_epoch(report)
        log.info("epoch %d: train %.5f val %.5f (%.1fs)", epoch, report.train_loss, val_loss,
                 report.seconds)
        watched = val_loss if n_val else report.train_loss
        if watched < best - 1e-6:
            best, stale = watched, 0
            result.best_epoch, result.best_val_loss = epoch, val_loss
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                result.stopped_early = True
                break
    model.load_state_dict(best_state)
    model.to("cpu")
    model.eval()
    return result


def corrupt(batch: torch.Tensor, config: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Denoising input: Gaussian noise and/or zeroed time steps (the target stays clean)."""
    if config.noise_std > 0:
        batch = batch + torch.randn(batch.shape, generator=gen).to(batch.device) * config.noise_std
    if config.mask_ratio > 0:
        keep = (torch.rand(batch.shape[:2], generator=gen) >= config.mask_ratio).to(batch.device)
        batch = batch * keep.unsqueeze(-1)
    return batch


@torch.no_grad()
def reconstruction_loss(model: SequenceAutoencoder, windows: torch.Tensor,
                        batch_size: int = 1024) -> float:
    """Mean squared reconstruction error of ``windows`` in eval mode."""
    model.eval()
    total = 0.0
    for i in range(0, len(windows), batch_size):
        batch = windows[i: i + batch_size]
        recon, _ = model(batch)
        total += float(torch.sum((recon - batch) ** 2)) / batch[0].numel()
    return total / max(len(windows), 1)
