"""Shared-secret signatures on the messages that change what a daemon does.

Model announcements (``daemon.models_topic``) swap every follower's model; control
messages (``daemon.control_topic``) start update rounds and admit quarantined windows
into training. Topic ACLs decide who may write them (see docs/deployment.md); with
``daemon.signature_key_env`` set, every such message must also carry
``"signature": "hmac-sha256:<hex>"``, an HMAC-SHA256 with the key read from that
environment variable over the message's canonical JSON (sorted keys, no spaces, the
signature field left out). Publishers (``streamae models promote --announce``,
``streamae control``, the updater daemon) sign; daemons refuse and count a message that
is unsigned or signed with another key.

An announcement's file checksums guard against a corrupted copy; the signature guards
against a forged announcement. Neither stops a replay of an older signed message (an
old announcement rolls the fleet back): ACLs do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from streamae.errors import ConfigError

PREFIX = "hmac-sha256:"


class SignatureError(ValueError):
    """A message that must be signed is not, or not with this fleet's key."""


def key_from_env(name: str | None) -> bytes | None:
    """The signing key named by ``daemon.signature_key_env`` (None: signing off)."""
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"config field 'daemon.signature_key_env': environment variable "
                          f"{name} is not set (or empty); set it to the fleet's shared "
                          "signing key, or set the field to null to turn signing off")
    return value.encode()


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def sign(doc: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """``doc`` with its signature (unchanged when signing is off)."""
    if key is None:
        return doc
    mac = hmac.new(key, _canonical(doc), hashlib.sha256).hexdigest()
    return {**doc, "signature": PREFIX + mac}


def check(doc: dict[str, Any], key: bytes | None) -> None:
    """Raise :class:`SignatureError` unless ``doc`` is signed with ``key`` (no-op when
    signing is off)."""
    if key is None:
        return
    given = doc.get("signature")
    if not isinstance(given, str) or not given.startswith(PREFIX):
        raise SignatureError("unsigned (daemon.signature_key_env is set: every message must "
                             "be signed)")
    want = PREFIX + hmac.new(key, _canonical(doc), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given, want):
        raise SignatureError("signature does not match (forged, altered, or signed with "
                             "another key)")
