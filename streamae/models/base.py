"""The interface every sequence autoencoder speaks."""

from __future__ import annotations

import torch
from torch import nn


class SequenceAutoencoder(nn.Module):
    """Maps windows ``(batch, window, channels)`` to reconstructions of the same shape.

    ``forward`` returns the reconstruction and a regularisation loss (0 unless the model
    is variational); ``encode`` returns the deterministic latent vector ``(batch, latent)``.
    """

    window: int
    channels: int

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _check(self, x: torch.Tensor) -> None:
        assert x.ndim == 3 and x.shape[1:] == (self.window, self.channels), (
            f"expected windows (batch, {self.window}, {self.channels}), got {tuple(x.shape)}")
