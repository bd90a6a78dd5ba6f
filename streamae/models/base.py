"""The interface every sequence autoencoder speaks."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn


class ModelOutput(NamedTuple):
    """What a model makes of windows ``(B, W, C)``: their reconstruction, the forecast of
    steps 1..W-1 each from the steps before it (None without a forecast head), and a
    regularisation loss (0 unless variational)."""

    reconstruction: torch.Tensor
    forecast: torch.Tensor | None
    reg: torch.Tensor


class SequenceAutoencoder(nn.Module):
    """Maps windows ``(batch, window, channels)`` to reconstructions of the same shape.

    ``errors`` gives the squared error of each output head per step and channel, the raw
    material of the anomaly score; ``loss`` is what training minimises; ``encode`` returns
    the deterministic latent vector ``(batch, latent)``. A model fitted in closed form
    (the linear autoencoder) does so in ``fit_closed``.
    """

    window: int
    channels: int

    @property
    def heads(self) -> tuple[str, ...]:
        """Names of the error heads, in the order :meth:`errors` stacks them."""
        return ("reconstruction",)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> ModelOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        """Squared errors ``(heads, B, W, C)``; a forecast has none at step 0 (nan)."""
        return output_errors(self(x), x)

    def loss(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss of (possibly corrupted) ``inputs`` against the clean ``target``."""
        out = self(inputs)
        loss = torch.mean((out.reconstruction.float() - target) ** 2) + out.reg
        if out.forecast is not None:
            loss = loss + torch.mean((out.forecast.float() - target[:, 1:]) ** 2)
        return loss

    def bound(self, windows: np.ndarray | None) -> None:
        """Learn from the windows just trained on whatever the model holds to their range
        (the linear autoencoder's codes; None: nothing held, as while training); nothing
        by default."""

    def fit_closed(self, windows: np.ndarray) -> bool:
        """Fit what has a closed form on scaled windows ``(n, W, C)`` and freeze it
        (``requires_grad = False``) for the rest of this training run; True when nothing is
        left for gradient training."""
        return False

    def _check(self, x: torch.Tensor) -> None:
        assert x.ndim == 3 and x.shape[1:] == (self.window, self.channels), (
            f"expected windows (batch, {self.window}, {self.channels}), got {tuple(x.shape)}")


def output_errors(out: ModelOutput, x: torch.Tensor) -> torch.Tensor:
    """Per-head squared errors of a :class:`ModelOutput` against its input windows."""
    errs = [(out.reconstruction.float() - x) ** 2]
    if out.forecast is not None:
        fc = torch.full_like(x, float("nan"))
        fc[:, 1:] = (out.forecast.float() - x[:, 1:]) ** 2
        errs.append(fc)
    return torch.stack(errs)
