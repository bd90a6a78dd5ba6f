"""Transformer autoencoder with a pooled latent bottleneck."""

from __future__ import annotations

import torch
from torch import nn

from streamae.config import TransformerConfig
from streamae.models.base import SequenceAutoencoder


class TransformerAutoencoder(SequenceAutoencoder):
    """Self-attention encoder, mean-pooled into one latent vector, decoded by a second
    self-attention stack from (latent + position) tokens.

    Pooling into ``latent`` numbers is the undercomplete bottleneck: without it attention
    could route each input step straight to its output.
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

    def _layer(self) -> nn.TransformerEncoderLayer:
        c = self.config
        return nn.TransformerEncoderLayer(c.d_model, c.heads, c.ff, c.dropout, batch_first=True,
                                          norm_first=True)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        tokens = self.encoder(self.input(x) + self.enc_pos)
        return self.to_latent(tokens.mean(dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        tokens = self.from_latent(z).unsqueeze(1) + self.dec_pos
        return self.output(self.decoder(tokens)), x.new_zeros(())
