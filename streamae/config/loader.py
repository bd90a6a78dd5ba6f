"""Reading a config: YAML and dotted overrides -> validated, typed sections. pydantic
validates (see :mod:`~streamae.config.fields`); its errors become one message per field
with the field path, the bad value and what is allowed."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from streamae.config.detection import MEMBER_CONFIGS, MODEL_CONFIGS, EnsembleConfig, ModelConfig
from streamae.config.root import Config
from streamae.config.updater import MOVED
from streamae.errors import ConfigError

_CONFIG = TypeAdapter(Config)
MAPPING_VALUE = "[value]"  # what :func:`_place` names a mapping field's value
_MODEL = TypeAdapter(ModelConfig)


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
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError(f"{_source(exc, path, overrides or {})}: {exc}") from None


def _source(exc: ConfigError, path: str | Path, overrides: dict[str, Any]) -> str:
    """Where a bad value came from: the overrides when every field the error names was
    set by one of them (the file is not at fault), else the file."""
    named = re.findall(r"config field '([^']+)'", str(exc))
    pairs = [(f, k) for f in named for k in overrides if f == k or f.startswith(k + ".")]
    if named and {f for f, _ in pairs} == set(named):
        setters = dict.fromkeys(k for _, k in pairs)  # in order, once each
        return "override " + ", ".join(f"{k}={overrides[k]!r}" for k in setters) + f" (on {path})"
    return str(path)


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
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping of sections, got {data!r}")
    if isinstance(data.get("updater"), dict):
        _moved(data["updater"])
    return _validated(_CONFIG, data, ())


def model_config_from_dict(data: dict[str, Any]) -> Any:
    """A model section (a checkpoint's ``model``), validated as the config's would be."""
    return _validated(_MODEL, data, ("model",))


def _validated(adapter: TypeAdapter, data: Any, at: tuple) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(explain(exc, at)) from None


def _moved(updater: dict[str, Any]) -> None:
    """Refuse the flat updater fields of earlier versions, naming where each lives now."""
    old = sorted(u for u in updater if u in MOVED)
    moved = dict(MOVED)
    if isinstance(updater.get("buffer"), str):  # was the buffer's scope
        old, moved["buffer"] = ["buffer"] + old, "buffer.scope"
    if old:
        raise ConfigError("config field(s) moved: " + "; ".join(
            f"'updater.{o}' is now 'updater.{moved[o]}'" for o in old)
            + " (the updater section is split into buffer, triggers, finetune, gate and "
            "relearn; `streamae config show` prints them all)")


# ------------------------------------------------------------------ error messages
def explain(exc: ValidationError, at: tuple = ()) -> str:
    """One line per bad field (the first problem of each): path, value, what is allowed."""
    lines: dict[str, str] = {}
    unknown: dict[str, tuple[type | None, list[str]]] = {}
    for error in exc.errors():
        path, owner, field_name = _place(at + tuple(error["loc"]))
        if error["type"] == "unexpected_keyword_argument":
            section = path.rpartition(".")[0]
            unknown.setdefault(section, (owner, []))[1].append(field_name)
            continue
        if path not in lines:
            lines[path] = (f"config field '{path}': must be a plain value"
                           if field_name == MAPPING_VALUE else _problem(error, path))
        elif error["type"] == "literal_error":  # a number or a word (window.size: auto)
            lines[path] += f", or {_names(error.get('ctx', {}).get('expected', ''))}"
    for section, (owner, names) in unknown.items():
        lines[f"{section}.*"] = _unknown(section, owner, names)
    return "; ".join(lines.values())


def _place(loc: tuple) -> tuple[str, type | None, str]:
    """The dotted field path of an error's location (union tags dropped, list items as
    ``[i]``), the section class holding its last field and that field's name."""
    parts: list[str] = []
    cls: type | None = Config
    owner: type | None = Config
    name, mapping = "", False
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif mapping:  # a key of a mapping field (kafka.client): its values are plain
            parts.append(item)
            mapping, name = False, MAPPING_VALUE
        elif cls is not None and item in {f.name for f in dataclasses.fields(cls)}:
            parts.append(item)
            owner, name = cls, item
            hint = typing.get_type_hints(cls)[item]
            cls = hint if dataclasses.is_dataclass(hint) else None
            mapping = typing.get_origin(hint) is dict
        elif item in MODEL_CONFIGS:  # the union tag: the model kind the section names
            cls = MODEL_CONFIGS[item]
        elif cls is not None:  # a field the section does not have
            parts.append(item)
            owner, name = cls, item
            cls = None
    return ".".join(parts), owner, name


_PLAIN = {"int": "must be an integer", "bool": "must be true or false",
          "float": "must be a number", "string": "must be a non-empty string",
          "list": "must be a list of names", "dict": "must be a mapping",
          "dataclass": "must be a mapping", "model": "must be a mapping"}


def _problem(error: dict[str, Any], path: str) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    got = f"config field '{path}': got {value!r}"
    if kind == "union_tag_invalid":
        return (f"config field '{path}.kind': got {ctx.get('tag')!r}; allowed: "
                f"{_names(ctx.get('expected_tags', ''))}")
    if kind == "union_tag_not_found":
        allowed = MEMBER_CONFIGS if "members" in path else MODEL_CONFIGS
        return f"config field '{path}.kind': missing; allowed: {', '.join(allowed)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
                "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"{got}; must be {sign} {bound}"
    if kind == "literal_error":
        return f"{got}; allowed: {_names(ctx.get('expected', ''))}"
    if kind == "value_error":
        return f"{got}; {ctx.get('error', error['msg'])}"
    if path.endswith("members") and kind == "list_type":  # an empty list: Config's check
        return f"{got}; must be a list of member models, e.g. [{{kind: lstm}}, {{kind: linear}}]"
    for prefix, text in _PLAIN.items():
        if kind.startswith(prefix):
            return f"{got}; {text}"
    return f"{got}; {error['msg']}"


def _names(expected: str) -> str:
    """pydantic's "'a', 'b' or 'c'" as "a, b, c"."""
    return expected.replace(" or ", ", ").replace("'", "")


def _unknown(section: str, owner: type | None, names: list[str]) -> str:
    where = f"'{section}'" if section else "the top level"
    fields = [f.name for f in dataclasses.fields(owner)] if owner else []
    hint = ""
    if owner in MODEL_CONFIGS.values():
        hint = (f" (fields of model kind {owner.kind!r}; the default kind is "
                f"{EnsembleConfig.kind!r}: set kind to use another model's fields)")
    return (f"unknown config field(s) {', '.join(repr(n) for n in names)} in {where}; "
            f"allowed: {', '.join(fields)}{hint}")

