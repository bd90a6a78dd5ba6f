"""LSTM encoder-decoder autoencoder with a next-step forecast head, optionally variational."""

from __future__ import annotations

import torch
from torch import nn

from streamae.config import LSTMConfig
from streamae.models.base import ModelOutput, SequenceAutoencoder


class LSTMAutoencoder(SequenceAutoencoder):
    """Encode a window into one latent vector, decode it back step by step; beside it, a
    linear head on the encoder's state at each step forecasts the next step.

    The decoder sees the latent vector at every step; the bottleneck (``latent`` much
    smaller than window x channels) forces it to learn the normal shape, not copy input.
    The forecast head sees only the past of the step it predicts, so it judges each point
    by its context: a value normal in level but wrong for its moment stands out there.
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
        self.forecast = nn.Linear(config.hidden, channels) if config.forecast else None

    @property
    def heads(self) -> tuple[str, ...]:
        return ("reconstruction", "forecast") if self.forecast is not None else ("reconstruction",)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        self._check(x)
        states, (h, _) = self.encoder(x)
        params = self.to_latent(h[-1])
        if self.config.variational:
            mu, logvar = params.chunk(2, dim=-1)
            return states, mu, logvar.clamp(-10.0, 10.0)
        return states, params, None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(x)[1]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        states, mu, logvar = self._encode(x)
        z, reg = mu, x.new_zeros(())
        if logvar is not None:
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1).mean()
            reg = self.config.beta * kl
            if self.training:  # sample only while learning; scoring stays deterministic
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        steps = self.from_latent(z).unsqueeze(1).expand(-1, self.window, -1)
        decoded, _ = self.decoder(steps)
        forecast = self.forecast(states[:, :-1]) if self.forecast is not None else None
        return ModelOutput(self.output(decoded), forecast, reg)
