"""Models built by name from their config object."""

from __future__ import annotations

from streamae.config import ModelConfig
from streamae.models.base import SequenceAutoencoder
from streamae.models.ensemble import EnsembleAutoencoder
from streamae.models.linear_ae import LinearAutoencoder
from streamae.models.lstm_ae import LSTMAutoencoder
from streamae.models.transformer_ae import TransformerAutoencoder

MODELS: dict[str, type[SequenceAutoencoder]] = {
    "lstm": LSTMAutoencoder,
    "transformer": TransformerAutoencoder,
    "linear": LinearAutoencoder,
    "ensemble": EnsembleAutoencoder,
}


def build_model(config: ModelConfig, window: int, channels: int) -> SequenceAutoencoder:
    """Instantiate the autoencoder named by ``config.kind``."""
    return MODELS[config.kind](config, window, channels)  # type: ignore[arg-type]
