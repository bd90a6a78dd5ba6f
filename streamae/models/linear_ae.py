"""Linear autoencoder: the principal components of training windows."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from streamae.config import LinearConfig
from streamae.models.base import ModelOutput, SequenceAutoencoder


class LinearAutoencoder(SequenceAutoencoder):
    """Flatten a window, project it on the leading principal components of the training
    windows and back: the undercomplete linear autoencoder, fitted in closed form.

    Each code is held to the range the training windows gave it (:meth:`bound`): a window
    that lies in the components' span but far beyond where training went (a level or an
    amplitude never seen) is reconstructed at the edge of that range, so it shows as
    error on the channels and steps that left it, as a principal-components monitor's
    in-span distance would show it.

    ``components`` fixes the module's shape (what a checkpoint rebuilds); of those, the
    fewest explaining ``variance`` of the training windows are used (the ``active`` mask),
    the rest stay zero. Encoder and decoder are ordinary linear layers, so the updater can
    fine-tune them like any other model.
    """

    def __init__(self, config: LinearConfig, window: int, channels: int) -> None:
        super().__init__()
        self.config, self.window, self.channels = config, window, channels
        dim = window * channels
        k = min(config.components, dim)
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("active", torch.ones(k))
        # each code's range over the training windows (+-inf: unbounded, as checkpoints
        # saved before the bounds were)
        self.register_buffer("code_low", torch.full((k,), -math.inf))
        self.register_buffer("code_high", torch.full((k,), math.inf))
        self._register_load_state_dict_pre_hook(_unbounded_if_missing)
        self.encoder = nn.Linear(dim, k, bias=False)
        self.decoder = nn.Linear(k, dim, bias=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.encoder(x.reshape(len(x), -1) - self.center) * self.active

    def forward(self, x: torch.Tensor) -> ModelOutput:
        code = torch.minimum(torch.maximum(self.encode(x), self.code_low), self.code_high)
        recon = self.decoder(code) + self.center
        return ModelOutput(recon.reshape(x.shape), None, x.new_zeros(()))

    @torch.no_grad()
    def fit_closed(self, windows: np.ndarray) -> bool:
        data = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).reshape(
            len(windows), -1).double()
        center = data.mean(dim=0)
        data -= center
        k = self.encoder.out_features
        q = min(k + 8, *data.shape)
        _, s, v = torch.svd_lowrank(data, q=q, niter=4, M=None)
        total = float((data ** 2).sum())
        share = torch.cumsum(s ** 2, 0) / max(total, 1e-12)
        keep = min(int(torch.searchsorted(share, torch.tensor(self.config.variance,
                                                              dtype=share.dtype))) + 1, k, q)
        basis = torch.zeros(k, data.shape[1], dtype=torch.float64)
        basis[:keep] = v[:, :keep].T
        self.center.copy_(center.float())
        self.encoder.weight.copy_(basis.float())
        self.decoder.weight.copy_(basis.T.float())
        self.active.zero_()
        self.active[:keep] = 1.0
        for param in self.parameters():
            param.requires_grad_(False)
        return True

    @torch.no_grad()
    def bound(self, windows: np.ndarray | None) -> None:
        """Hold each code to its range over ``windows`` (the ones just trained on; None:
        free, as while training)."""
        if windows is None or not len(windows):
            self.code_low.fill_(-math.inf)
            self.code_high.fill_(math.inf)
            return
        device = self.center.device
        codes = torch.cat([self.encode(torch.from_numpy(np.ascontiguousarray(
            windows[i: i + 4096], dtype=np.float32)).to(device))
            for i in range(0, len(windows), 4096)])
        self.code_low.copy_(codes.min(dim=0).values)
        self.code_high.copy_(codes.max(dim=0).values)


def _unbounded_if_missing(state: dict, prefix: str, *_: object) -> None:
    """Checkpoints from before the bounds load with unbounded codes."""
    if prefix + "active" in state:
        active = state[prefix + "active"]
        state.setdefault(prefix + "code_low", torch.full_like(active, -math.inf))
        state.setdefault(prefix + "code_high", torch.full_like(active, math.inf))
