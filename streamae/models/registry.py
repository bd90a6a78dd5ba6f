"""Models built by name from their config object."""

from __future__ import annotations

from streamae.config import LSTMConfig, TransformerConfig
from streamae.models.base import SequenceAutoencoder
from streamae.models.lstm_ae import LSTMAutoencoder
from streamae.models.transformer_ae import TransformerAutoencoder

MODELS: dict[str, type[SequenceAutoencoder]] = {
    "lstm": LSTMAutoencoder,
    "transformer": TransformerAutoencoder,
}


def build_model(config: LSTMConfig | TransformerConfig, window: int,
                channels: int) -> SequenceAutoencoder:
    """Instantiate the autoencoder named by ``config.kind``."""
    return MODELS[config.kind](config, window, channels)  # type: ignore[arg-type]
