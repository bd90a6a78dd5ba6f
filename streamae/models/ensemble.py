"""Ensemble: member models of any kind side by side, each calibrated on its own."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streamae.config import EnsembleConfig
from streamae.models.base import ModelOutput, SequenceAutoencoder, output_errors


class EnsembleAutoencoder(SequenceAutoencoder):
    """Runs every member on the same windows. Its error heads are the members' heads side
    by side (``member_heads`` says which belong to whom), so the calibration can score each
    member on its own scale before they are combined; training minimises the sum of the
    members' losses; closed-form members are fitted in closed form."""

    def __init__(self, config: EnsembleConfig, window: int, channels: int) -> None:
        from streamae.models.registry import build_model

        super().__init__()
        self.config, self.window, self.channels = config, window, channels
        self.members = nn.ModuleList(build_model(m, window, channels) for m in config.members)

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(f"{i}.{m.config.kind}.{h}" for i, m in enumerate(self.members)
                     for h in m.heads)

    @property
    def member_heads(self) -> list[list[int]]:
        """Indices into :attr:`heads` of each member's heads."""
        out, start = [], 0
        for m in self.members:
            out.append(list(range(start, start + len(m.heads))))
            start += len(m.heads)
        return out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.encode(x) for m in self.members], dim=-1)

    def forward(self, x: torch.Tensor) -> ModelOutput:  # pragma: no cover - use errors/loss
        raise TypeError("an ensemble has no single reconstruction; use errors() or loss()")

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([output_errors(m(x), x) for m in self.members])

    def loss(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum((m.loss(inputs, target) for m in self.members), inputs.new_zeros(()))

    def fit_closed(self, windows: np.ndarray) -> bool:
        return all([m.fit_closed(windows) for m in self.members])

    def bound(self, windows: np.ndarray | None) -> None:
        for m in self.members:
            m.bound(windows)
