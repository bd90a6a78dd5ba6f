"""LSTM encoder-decoder autoencoder, optionally variational."""

from __future__ import annotations

import torch
from torch import nn

from streamae.config import LSTMConfig
from streamae.models.base import SequenceAutoencoder


class LSTMAutoencoder(SequenceAutoencoder):
    """Encode a window into one latent vector, decode it back step by step.

    The decoder sees the latent vector at every step; the bottleneck (``latent`` much
    smaller than window x channels) forces it to learn the normal shape, not copy input.
    """

    def __init__(self, config: LSTMConfig, window: int, channels: int) -> None:
        super().__init__()
        self.config, self.window, self.channels = config, window, channels
        between = config.dropout if config.layers > 1 else 0.0
        self.encoder = nn.LSTM(channels, config.hidden, config.layers, batch_first=True,
                               dropout=between)
        self.to_latent = nn.Linear(config.hidden, config.latent * (2 if config.variational else 1))
        self.from_latent = nn.Linear(config.latent, config.hidden)
        self.decoder = nn.LSTM(config.hidden, config.hidden, config.layers, batch_first=True,
                               dropout=between)
        self.output = nn.Linear(config.hidden, channels)

    def _latent_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        self._check(x)
        _, (h, _) = self.encoder(x)
        params = self.to_latent(h[-1])
        if self.config.variational:
            mu, logvar = params.chunk(2, dim=-1)
            return mu, logvar.clamp(-10.0, 10.0)
        return params, None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._latent_params(x)[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self._latent_params(x)
        z, reg = mu, x.new_zeros(())
        if logvar is not None:
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1).mean()
            reg = self.config.beta * kl
            if self.training:  # sample only while learning; scoring stays deterministic
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        steps = self.from_latent(z).unsqueeze(1).expand(-1, self.window, -1)
        decoded, _ = self.decoder(steps)
        return self.output(decoded), reg
