"""Field helpers shared by the config sections: a default with its help text and checks."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def _opt(default: Any, help: str, **checks: Any) -> Any:
    """A field with a help text and optional checks (min, max, duration)."""
    return field(default=default, metadata={"help": help, **checks})


KIND_HELP = "model kind: lstm | transformer | linear | ensemble (see README: models)"


def _opt_dict(help: str) -> Any:
    return field(default_factory=dict, metadata={"help": help})
