"""The one training loop: offline training, pretraining, fine-tuning and online rounds.

Closed-form parts (the linear autoencoder) are fitted first and held fixed; the rest is
trained with Adam on (optionally denoised) windows, early-stopped on held-out windows
after ``min_epochs``, with a cosine learning-rate decay and a wall-time budget. The best
epoch's weights are kept; the model ends on the CPU in eval mode.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    """What training did: per-epoch losses, the epoch kept, why it stopped, and the
    held-out loss before the first epoch."""

    epochs: list[EpochReport] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.nan
    initial_val_loss: float = math.nan
    stopped: str = "epochs"
    windows: int = 0
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def stopped_early(self) -> bool:
        return self.stopped == "early stopping"

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if not self.epochs:
            return f"fitted in closed form on {self.windows} windows ({self.seconds:.1f} s)"
        return (f"best epoch {self.best_epoch} of {len(self.epochs)} (stopped: {self.stopped}), "
                f"held-out loss {self.initial_val_loss:.4g} -> {self.best_val_loss:.4g}, "
                f"{self.windows} windows, {self.seconds:.1f} s on {self.device}")


def fit(model: SequenceAutoencoder, train: np.ndarray, val: np.ndarray, config: TrainConfig,
        param_groups: list[dict[str, Any]] | None = None,
        on_epoch: Callable[[EpochReport], None] | None = None,
        on_step: Callable[[int], None] | None = None, closed_form: bool = True,
        reach: np.ndarray | None = None) -> TrainResult:
    """Train ``model`` in place on scaled windows ``train`` (``(n, W, C)`` float32),
    early-stopping on ``val``. ``param_groups`` (fine-tuning) set per-group learning
    rates; by default every trainable parameter learns at ``config.lr``. The trained
    model's codes are then held to the range the ``reach`` windows give them (default:
    ``train``; see :meth:`SequenceAutoencoder.bound`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    try:
        return _fit(model, train, val, config, param_groups, on_epoch, on_step, closed_form,
                    train if reach is None else reach)
    finally:
        torch.set_num_threads(threads)


def _fit(model: SequenceAutoencoder, train: np.ndarray, val: np.ndarray, config: TrainConfig,
         param_groups: list[dict[str, Any]] | None,
         on_epoch: Callable[[EpochReport], None] | None,
         on_step: Callable[[int], None] | None, closed_form: bool,
         reach: np.ndarray) -> TrainResult:
    start = time.perf_counter()
    result = TrainResult(windows=len(train))
    torch.manual_seed(config.seed)
    model.bound(None)  # trained free, then held to what these windows give it
    if closed_form and model.fit_closed(train):
        result.seconds = time.perf_counter() - start
        _finish(model, reach)
        return result
    device = pick_device(config.device)
    result.device = device.type
    gen = torch.Generator(device=device).manual_seed(config.seed)
    data, held = _to(train, device), _to(val, device)
    model.to(device)
    opt = _optimizer(model, param_groups, config)
    if opt is None:  # nothing left to train
        _finish(model, reach)
        return result
    bf16 = device.type == "cuda" and "transformer" in type(model).__name__.lower()
    best = result.initial_val_loss = _loss(model, held, bf16) if len(held) else math.inf
    best_state = _copy(model)
    stale = 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        _schedule(opt, config, epoch)
        deadline = start + config.time_budget if config.time_budget else math.inf
        train_loss, out_of_time = _epoch(model, opt, data, config, gen, bf16, on_step, deadline)
        if out_of_time:
            result.stopped = "time budget"
        val_loss = _loss(model, held, bf16) if len(held) else math.nan
        report = EpochReport(epoch, train_loss, val_loss, time.perf_counter() - t0)
        result.epochs.append(report)
        if on_epoch:
            on_epoch(report)
        log.info("epoch %d: train %.5f held-out %.5f (%.1fs)", epoch, report.train_loss,
                 val_loss, report.seconds)
        watched = val_loss if len(held) else report.train_loss
        if watched < best - 1e-6 * abs(best):
            best, stale = watched, 0
            result.best_epoch, result.best_val_loss = epoch, watched
            best_state = _copy(model)
        else:
            stale += 1
            if epoch >= config.min_epochs and stale >= config.patience:
                result.stopped = "early stopping"
        if result.stopped != "epochs":
            break
    if not math.isfinite(result.best_val_loss):
        result.best_val_loss = best
    model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    _finish(model, reach)
    log.info("training: %s", result.summary())
    return result


def _optimizer(model: SequenceAutoencoder, param_groups: list[dict[str, Any]] | None,
               config: TrainConfig) -> torch.optim.Optimizer | None:
    """Adam over the given groups (default: every trainable parameter at ``config.lr``),
    each remembering its base rate for the schedule; None when nothing is trainable."""
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad],
                               "lr": config.lr}]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.Adam(groups, weight_decay=config.weight_decay) if groups else None


def _epoch(model: SequenceAutoencoder, opt: torch.optim.Optimizer, data: torch.Tensor,
           config: TrainConfig, gen: torch.Generator, bf16: bool,
           on_step: Callable[[int], None] | None, deadline: float) -> tuple[float, bool]:
    """One pass over ``data`` in a seeded random order: (mean training loss, whether the
    time budget ran out before the pass ended)."""
    model.train()
    order = torch.randperm(len(data), generator=gen, device=data.device)
    total = torch.zeros((), device=data.device)
    for i in range(0, len(data), config.batch_size):
        batch = data[order[i: i + config.batch_size]]
        with torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(corrupt(batch, config, gen), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        total += loss.detach() * len(batch)
        if on_step:
            on_step(len(batch))
        if time.perf_counter() > deadline:
            return float(total) / len(data), True
    return float(total) / len(data), False


def corrupt(batch: torch.Tensor, config: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Denoising input: Gaussian noise and/or zeroed time steps (the target stays clean)."""
    if config.noise_std > 0:
        batch = batch + torch.randn(batch.shape, generator=gen, device=batch.device) \
            * config.noise_std
    if config.mask_ratio > 0:
        keep = torch.rand(batch.shape[:2], generator=gen, device=batch.device) >= config.mask_ratio
        batch = batch * keep.unsqueeze(-1)
    return batch


@torch.no_grad()
def _loss(model: SequenceAutoencoder, windows: torch.Tensor, bf16: bool = False,
          batch_size: int = 1024) -> float:
    """Mean training loss of clean ``windows`` in eval mode."""
    model.eval()
    total = 0.0
    for i in range(0, len(windows), batch_size):
        batch = windows[i: i + batch_size]
        with torch.autocast(windows.device.type, dtype=torch.bfloat16, enabled=bf16):
            total += float(model.loss(batch, batch)) * len(batch)
    return total / max(len(windows), 1)


def held_out_loss(model: SequenceAutoencoder, windows: np.ndarray) -> float:
    """Mean loss of ``windows`` (CPU, eval mode): what the updater's gate compares."""
    return _loss(model, _to(windows, torch.device("cpu")))


def _schedule(opt: torch.optim.Optimizer, config: TrainConfig, epoch: int) -> None:
    if config.lr_schedule != "cosine" or config.epochs <= 1:
        return
    decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / (config.epochs - 1)))
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * decay


def _to(windows: np.ndarray, device: torch.device) -> torch.Tensor:
    data = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    return data.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else data


def _copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _finish(model: SequenceAutoencoder, reach: np.ndarray) -> None:
    """The trained model held to the range ``reach`` gives it, on the CPU, for scoring."""
    model.bound(reach)
    if next(model.parameters()).device.type == "cuda":
        torch.cuda.synchronize()
    model.to("cpu")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
