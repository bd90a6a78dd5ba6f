"""Config as plain data, with secrets masked, and as commented YAML."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import yaml

from streamae.config.root import Config
from streamae.durations import Span


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-ready data for a config dataclass (spans as text: '32 points')."""
    def plain(value: Any) -> Any:
        if isinstance(value, Span):
            return str(value)
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(config)


SECRET_FIELD = re.compile(r"password|secret|token|credential|signing_key", re.I)
_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


def masked(data: Any) -> Any:
    """A copy of plain config data safe to print, log or write into a report: the value of
    every secret-looking field becomes ``***`` (a ``${VAR}`` reference stays: it names the
    secret, it does not hold it)."""
    if isinstance(data, dict):
        return {k: ("***" if isinstance(k, str) and SECRET_FIELD.search(k) and v is not None
                    and not (isinstance(v, str) and _REFERENCE.match(v)) else masked(v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v) for v in data]
    return data


def public_dict(config: Any) -> dict[str, Any]:
    """:func:`config_to_dict` with secrets masked: what ``config show`` and reports render."""
    return masked(config_to_dict(config))


HEADER = """\
# streamae default configuration: the same values the package uses without --config.
# Generated from the config's fields: edit a default or a help text in streamae/config/,
# then run `streamae config show > configs/default.yaml` (a test checks they agree).
# Durations take seconds or text such as 90s, 5m, 1h; alarm spans also a count of the
# key's points (16 points). `streamae config check --config FILE` validates a file,
# `streamae config schema` prints the JSON Schema for editors.
"""


def commented_yaml(config: Config, header: str = HEADER) -> str:
    """Every field of ``config`` as YAML with its meaning above it (``config show``, and
    ``configs/default.yaml`` for the defaults); secrets masked. Loads back as the same
    settings."""
    import json

    data = json.loads(json.dumps(public_dict(config)))
    out = [header] if header else []
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        doc = first_sentence(type(value).__doc__ or "")
        out += [f"# {doc}", f"{section.name}:", *_commented(value, data[section.name], "  "),
                ""]
    return "\n".join(out)


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring, on one line."""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _commented(obj: Any, data: dict[str, Any], indent: str) -> list[str]:
    """One section's fields, each under its help; a list of sections (ensemble members) as
    a block of commented items."""
    import textwrap

    out: list[str] = []
    for f in dataclasses.fields(obj):
        help = f.metadata.get("description", "")
        out += [f"{indent}# {line}" for line in textwrap.wrap(help, 88 - len(indent) - 2)]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and isinstance(data[f.name], dict):  # a sub-section
            doc = first_sentence(type(value).__doc__ or "")
            out += [f"{indent}# {line}" for line in textwrap.wrap(doc, 88 - len(indent) - 2)]
            out += [f"{indent}{f.name}:", *_commented(value, data[f.name], indent + "  ")]
            continue
        if isinstance(value, list) and value and all(map(dataclasses.is_dataclass, value)):
            out.append(f"{indent}{f.name}:")
            for item, plain in zip(value, data[f.name]):
                out += [f"{indent}  -", *_commented(item, plain, indent + "    ")]
            continue
        text = yaml.safe_dump(data[f.name], default_flow_style=True, width=1 << 20).strip()
        out.append(f"{indent}{f.name}: {text.removesuffix('...').strip()}")
    return out
