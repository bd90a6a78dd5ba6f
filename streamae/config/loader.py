"""Reading a config: YAML and dotted overrides -> validated, typed sections. Unknown
fields, wrong types and values out of range fail with the field path, the bad value and
what is allowed."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from streamae.config.detection import EnsembleConfig, MEMBER_CONFIGS, MODEL_CONFIGS
from streamae.config.root import Config
from streamae.config.updater import MOVED, UpdaterConfig
from streamae.durations import Span, parse_duration
from streamae.errors import ConfigError

FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a YAML config (``None``: packaged defaults) and apply dotted ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, got "
                              f"{type(loaded).__name__}")
        data = loaded or {}
    _set_dotted(data, overrides or {}, lambda node, part: node.setdefault(part, {}))
    return config_from_dict(data)


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """``config`` with dotted fields replaced (``{"updater.finetune.lr": 1e-3}``; a
    number picks a list item: ``model.members.0.hidden``), validated like a loaded file."""
    from streamae.config.render import config_to_dict

    data = config_to_dict(config)
    _set_dotted(data, overrides, lambda node, part: node[int(part) if part.isdigit() else part])
    return config_from_dict(data)


def _set_dotted(data: dict[str, Any], overrides: dict[str, Any], step: Any) -> None:
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = step(node, part)
        node[leaf] = value


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from plain data."""
    return _build(Config, data, "")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix or 'top level'}' must be a mapping, "
                          f"got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if cls is UpdaterConfig:
        _moved(data, unknown, prefix)
    if unknown:
        where = f"'{prefix}'" if prefix else "the top level"
        hint = ""
        if cls in MODEL_CONFIGS.values():
            hint = (f" (fields of model kind {data.get('kind', cls.kind)!r}; the default "
                    f"kind is {EnsembleConfig.kind!r}: set kind to use another model's fields)")
        raise ConfigError(f"unknown config field(s) {', '.join(repr(u) for u in unknown)} in {where}; "
                          f"allowed: {', '.join(fields)}{hint}")
    kwargs = {}
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if name == "model" and cls is Config:
            hint = _model_class(value, path, MODEL_CONFIGS, EnsembleConfig.kind)
        elif name == "members" and cls is EnsembleConfig:
            if not isinstance(value, list):
                raise ConfigError(f"config field '{path}': got {value!r}; must be a list of "
                                  "member models, e.g. [{kind: lstm}, {kind: linear}]")
            kwargs[name] = [_build(_model_class(v, f"{path}[{i}]", MEMBER_CONFIGS, None), v,
                                   f"{path}[{i}]") for i, v in enumerate(value)]
            continue
        kwargs[name] = _coerce(hint, value, path, fields[name].metadata)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"config section '{prefix}': {exc}") from None


def _moved(data: dict[str, Any], unknown: list[str], prefix: str) -> None:
    """Refuse the flat updater fields of earlier versions, naming where each lives now."""
    old = [u for u in unknown if u in MOVED]
    if isinstance(data.get("buffer"), str):  # was the buffer's scope
        old, moved = ["buffer"] + old, {**MOVED, "buffer": "buffer.scope"}
    else:
        moved = MOVED
    if old:
        raise ConfigError("config field(s) moved: " + "; ".join(
            f"'{prefix}.{o}' is now '{prefix}.{moved[o]}'" for o in old)
            + " (the updater section is split into buffer, triggers, finetune, gate and "
            "relearn; `streamae config show` prints them all)")


def _model_class(value: Any, path: str, allowed: dict[str, type], default: str | None) -> type:
    """The config class a model section's ``kind`` names."""
    if not isinstance(value, dict):
        raise ConfigError(f"config section '{path}' must be a mapping, got {value!r}")
    kind = value.get("kind", default)
    if kind not in allowed:
        what = "missing" if kind is None else f"got {kind!r}"
        raise ConfigError(f"config field '{path}.kind': {what}; allowed: {', '.join(allowed)}")
    return allowed[kind]


def _coerce(hint: Any, value: Any, path: str, meta: Any) -> Any:
    origin = typing.get_origin(hint)
    if meta.get("span"):
        try:
            return Span.parse(value)
        except ValueError as exc:
            raise ConfigError(f"config field '{path}': got {value!r}; {exc}") from None
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for choice in inner[1:]:  # a literal alternative, e.g. int | Literal["auto"]
            if typing.get_origin(choice) is Literal and value in typing.get_args(choice):
                return value
        return _coerce(inner[0], value, path, meta)
    if meta.get("duration"):
        try:
            value = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"config field '{path}': got {value!r}; {exc}") from None
        return _check_range(value, path, meta)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"config field '{path}': got {value!r}; allowed: "
                              f"{', '.join(map(str, allowed))}")
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"config field '{path}': got {value!r}; must be a mapping")
        bad = [k for k, v in value.items() if isinstance(v, (dict, list))]
        if bad:
            raise ConfigError(f"config field '{path}.{bad[0]}': must be a plain value")
        return dict(value)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config field '{path}': got {value!r}; must be a list of names")
        return list(value)
    return _scalar(hint, value, path, meta)


def _scalar(hint: Any, value: Any, path: str, meta: Any) -> Any:
    """A bool, integer, number or non-empty string, range-checked."""
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config field '{path}': got {value!r}; must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config field '{path}': got {value!r}; must be an integer")
        return _check_range(value, path, meta)
    if hint is float:
        if isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as text
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config field '{path}': got {value!r}; must be a number")
        return _check_range(float(value), path, meta)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"config field '{path}': got {value!r}; must be a non-empty string")
        return value
    raise ConfigError(f"config field '{path}': unsupported type {hint}")  # pragma: no cover


def _check_range(value: float, path: str, meta: Any) -> Any:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and value < low:
        raise ConfigError(f"config field '{path}': got {value!r}; must be >= {low}")
    if high is not None and value > high:
        raise ConfigError(f"config field '{path}': got {value!r}; must be <= {high}")
    return value
