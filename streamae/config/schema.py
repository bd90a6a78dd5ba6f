"""A JSON Schema of the config, generated from the sections' types, bounds and help texts
(``streamae config schema``), for editors and CI. Checks that span fields (``window.hop``
within ``window.size``, ...) are left to :func:`~streamae.config.load_config`."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from streamae.config.detection import EnsembleConfig, MEMBER_CONFIGS, MODEL_CONFIGS
from streamae.config.fields import FLOAT_TEXT, Duration, SpanValue
from streamae.config.render import config_to_dict
from streamae.config.root import Config
from streamae.durations import DURATION_TEXT, POINTS_TEXT

SCHEMA_ID = "https://streamae.dev/schemas/config.json"
_NUMBER_TEXT = {"type": "string", "pattern": f"^\\s*{FLOAT_TEXT.pattern}\\s*$"}
_DURATION = {"anyOf": [{"type": "number", "minimum": 0},
                       {"type": "string", "pattern": DURATION_TEXT.pattern}],
             "description": "seconds, or text such as 90s, 5m, 1h"}
_SPAN = {"anyOf": [*_DURATION["anyOf"], {"type": "string", "pattern": POINTS_TEXT.pattern}],
         "description": "a duration (10m) or a count of the key's points (16 points)"}


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every config file must satisfy."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "streamae config", **_section(Config)}


def _section(cls: type, kind_required: bool = False) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    default = cls()
    plain = config_to_dict(default)
    props: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if cls is Config and f.name == "model":
            prop = _models(MODEL_CONFIGS, EnsembleConfig.kind)
        elif cls is EnsembleConfig and f.name == "members":
            prop = {"type": "array", "minItems": 1, "items": _models(MEMBER_CONFIGS, None)}
        else:
            prop = _field(hints[f.name], f.metadata)
        if f.metadata.get("description"):
            prop["description"] = f.metadata["description"]
        if not dataclasses.is_dataclass(getattr(default, f.name)):
            prop["default"] = plain[f.name]
        props[f.name] = prop
    out: dict[str, Any] = {"type": "object", "additionalProperties": False,
                           "properties": props}
    doc = (cls.__doc__ or "").strip()
    if doc:
        out["description"] = " ".join(doc.split())
    if kind_required:
        out["required"] = ["kind"]
    return out


def _models(allowed: dict[str, type], default: str | None) -> dict[str, Any]:
    """One schema per model kind; ``kind`` may be left out only for the default kind."""
    return {"anyOf": [_section(cls, kind_required=name != default)
                      for name, cls in allowed.items()]}


def _field(hint: Any, meta: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if hint == SpanValue:
        return dict(_SPAN)
    if dataclasses.is_dataclass(hint):
        return _section(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        choices = [_field(a, meta) for a in args if a is not type(None)]
        if type(None) in args:
            choices.append({"type": "null"})
        return choices[0] if len(choices) == 1 else {"anyOf": choices}
    if hint == Duration:
        return dict(_DURATION)
    if origin is typing.Annotated:  # Int, Float, Text...: the plain type's schema
        base, *extra = typing.get_args(hint)
        bounds = {k: getattr(x, k) for x in extra for k in ("ge", "le")
                  if getattr(x, k, None) is not None}
        return _field(base, {**meta, **bounds})
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin is dict:
        return {"type": "object", "additionalProperties":
                {"type": ["string", "number", "boolean", "null"]}}
    if origin is list:
        return {"type": "array", "items": {"type": "string"}}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer", **_bounds(meta)}
    if hint is float:
        return {"anyOf": [{"type": "number", **_bounds(meta)}, _NUMBER_TEXT]}
    if hint is str:
        return {"type": "string", "minLength": 1}
    raise TypeError(f"no schema for {hint}")  # pragma: no cover - every field type is above


def _bounds(meta: Any) -> dict[str, Any]:
    out = {}
    if meta.get("ge") is not None:
        out["minimum"] = meta["ge"]
    if meta.get("le") is not None:
        out["maximum"] = meta["le"]
    return out
