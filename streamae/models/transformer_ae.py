"""Transformer autoencoder with a pooled latent bottleneck and a next-step forecast head."""

from __future__ import annotations

import torch
from torch import nn

from streamae.config import TransformerConfig
from streamae.models.base import ModelOutput, SequenceAutoencoder


class TransformerAutoencoder(SequenceAutoencoder):
    """Self-attention encoder, mean-pooled into one latent vector, decoded by a second
    self-attention stack from (latent + position) tokens.

    Pooling into ``latent`` numbers is the undercomplete bottleneck: without it attention
    could route each input step straight to its output. With ``forecast`` the encoder is
    causally masked (each step attends to its past only) and a head on each step's token
    forecasts the next step.
    """

    def __init__(self, config: TransformerConfig, window: int, channels: int) -> None:
        super().__init__()
        self.config, self.window, self.channels = config, window, channels
        d = config.d_model
        self.input = nn.Linear(channels, d)
        self.enc_pos = nn.Parameter(torch.randn(1, window, d) * 0.02)
        self.dec_pos = nn.Parameter(torch.randn(1, window, d) * 0.02)
        self.encoder = nn.TransformerEncoder(self._layer(), config.layers, enable_nested_tensor=False)
        self.to_latent = nn.Linear(d, config.latent)
        self.from_latent = nn.Linear(config.latent, d)
        self.decoder = nn.TransformerEncoder(self._layer(), config.layers, enable_nested_tensor=False)
        self.output = nn.Linear(d, channels)
        self.forecast = nn.Linear(d, channels) if config.forecast else None
        if config.forecast:
            mask = torch.triu(torch.full((window, window), float("-inf")), diagonal=1)
            self.register_buffer("causal", mask, persistent=False)

    @property
    def heads(self) -> tuple[str, ...]:
        return ("reconstruction", "forecast") if self.forecast is not None else ("reconstruction",)

    def _layer(self) -> nn.TransformerEncoderLayer:
        c = self.config
        return nn.TransformerEncoderLayer(c.d_model, c.heads, c.ff, c.dropout, batch_first=True,
                                          norm_first=True)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        mask = self.causal if self.forecast is not None else None
        return self.encoder(self.input(x) + self.enc_pos, mask=mask, is_causal=mask is not None)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self._tokens(x).mean(dim=1))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        tokens = self._tokens(x)
        z = self.to_latent(tokens.mean(dim=1))
        decoded = self.decoder(self.from_latent(z).unsqueeze(1) + self.dec_pos)
        forecast = self.forecast(tokens[:, :-1]) if self.forecast is not None else None
        return ModelOutput(self.output(decoded), forecast, x.new_zeros(()))
