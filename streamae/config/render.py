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


def commented_yaml(config: Config) -> str:
    """Every field of ``config`` as YAML with its meaning above it (``config show``);
    secrets masked. Loads back as the same settings."""
    import json
    import textwrap

    data = json.loads(json.dumps(public_dict(config)))
    out: list[str] = []
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        doc = (type(value).__doc__ or "").strip().splitlines()[0]
        out += [f"# {doc}", f"{section.name}:"]
        for f in dataclasses.fields(value):
            meaning = f.metadata.get("help", "")
            out += [f"  # {line}" for line in textwrap.wrap(meaning, 86)]
            text = yaml.safe_dump(data[section.name][f.name], default_flow_style=True,
                                  width=1 << 20).strip()
            out.append(f"  {f.name}: {text.removesuffix('...').strip()}")
        out.append("")
    return "\n".join(out)
