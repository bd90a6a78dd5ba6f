"""What the config sections are built from: pydantic dataclasses, the value types they hold
and a default with its help text and bounds.

Each section is a frozen pydantic dataclass: pydantic validates a loaded file (types,
bounds, unknown fields, the model chosen by its ``kind``) and every
``dataclasses.replace`` in code; :mod:`~streamae.config.loader` turns its errors into
messages that name the field, the value and the fix. The value types are strict (no
``"5"`` for an integer, no ``"yes"`` for true), except that a number may be written as
YAML 1.1 text (``1e-3``) and durations and spans take text (``"5m"``, ``"16 points"``).
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, PlainValidator, Strict, StringConstraints
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from streamae.durations import Span, parse_duration

FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def section(cls: type) -> type:
    """A config section: frozen, unknown fields refused, validated by pydantic."""
    return _pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))(cls)


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as text: such text is a number."""
    if isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _span(value: Any) -> Span:
    if isinstance(value, bool):
        raise ValueError("a span is a duration ('30s', '5m', '1h', seconds) or a count of "
                         "the key's points ('16 points')")
    return Span.parse(value)


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, (str, int, float)) else value


Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Float = Annotated[float, BeforeValidator(_number), Strict()]
Text = Annotated[str, Strict(), StringConstraints(min_length=1)]
Duration = Annotated[float, BeforeValidator(_duration), Strict()]
SpanValue = Annotated[Span, PlainValidator(_span)]
Plain = str | int | float | bool | None


def _opt(default: Any, help: str, min: float | None = None,
         max: float | None = None) -> Any:
    """A field with a help text and optional bounds (``min`` <= value <= ``max``)."""
    bounds = {k: v for k, v in (("ge", min), ("le", max)) if v is not None}
    return field(default=default, metadata={"description": help, **bounds})


KIND_HELP = "model kind: lstm | transformer | linear | ensemble (see README: models)"


def _opt_dict(help: str) -> Any:
    return field(default_factory=dict, metadata={"description": help})
