"""Sequence autoencoders and what turns them into a detector."""

from streamae.models.registry import MODELS, build_model

__all__ = ["MODELS", "build_model"]
