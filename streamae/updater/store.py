"""Versioned models with lineage, and which one is live.

Layout::

    STORE/versions/<version>/   a model checkpoint (see streamae.models.detector)
    STORE/versions/<version>/lineage.json   parent, data range, metrics, created
    STORE/store.json            {"current": version, "history": [older live versions...]}

``promote`` makes a version live and remembers the one it replaced; ``rollback`` makes
the previous live version current again. Every write is atomic.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from streamae import atomic
from streamae.errors import ModelError
from streamae.models.detector import Detector


class ModelStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "versions").mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        path = self.root / "store.json"
        return json.loads(path.read_text()) if path.exists() else {"current": None,
                                                                    "history": []}

    def _write_state(self, state: dict[str, Any]) -> None:
        atomic.write_bytes(self.root / "store.json", json.dumps(state, indent=2).encode())

    def current(self) -> str | None:
        return self._state()["current"]

    # ---------------------------------------------------------------- versions
    def add(self, detector: Detector, parent: str | None = None,
            metrics: dict[str, Any] | None = None, data_range: list[float] | None = None,
            note: str = "") -> str:
        """Store a model version (not yet live) with its lineage."""
        if parent == detector.version:
            raise ModelError(f"version {parent} would be its own parent: the candidate has "
                             "the same weights as the live model")
        path = self.root / "versions" / detector.version
        detector.save(path)
        seq = 1 + max((v["seq"] for v in self.versions()), default=0)
        lineage = {"version": detector.version, "seq": seq, "parent": parent,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "data_range": data_range, "metrics": metrics or {}, "note": note}
        (path / "lineage.json").write_text(json.dumps(lineage, indent=2))
        return detector.version

    def versions(self) -> list[dict[str, Any]]:
        """Every stored version with its lineage, oldest first; ``live`` marks the current."""
        current = self.current()
        out = []
        for path in (self.root / "versions").iterdir():
            file = path / "lineage.json"
            if file.exists():
                lineage = json.loads(file.read_text())
                out.append({**lineage, "live": lineage["version"] == current})
        return sorted(out, key=lambda v: v["seq"])

    def load(self, version: str | None = None) -> Detector:
        version = version or self.current()
        if version is None:
            raise ModelError(f"model store {self.root} has no live version; promote one")
        path = self.root / "versions" / version
        if not path.exists():
            raise ModelError(f"model store {self.root} has no version {version!r}; "
                             "see `streamae models list`")
        return Detector.load(path)

    def holds(self, version: str) -> bool:
        return version in {v["version"] for v in self.versions()}

    def adopt(self, detector: Detector, note: str) -> None:
        """Make ``detector`` the live version, adding it first unless the store holds it."""
        if not self.holds(detector.version):
            self.add(detector, note=note)
        self.promote(detector.version)

    def promote(self, version: str) -> None:
        """Make ``version`` live (verifying it loads first)."""
        self.load(version)
        state = self._state()
        if state["current"] == version:
            return
        if state["current"] is not None:
            state["history"].append(state["current"])
        state["current"] = version
        self._write_state(state)

    def rollback(self) -> str:
        """Make the previously live version current again; returns it."""
        state = self._state()
        if not state["history"]:
            raise ModelError(f"model store {self.root}: no earlier live version to roll back to")
        state["current"] = state["history"].pop()
        self._write_state(state)
        return state["current"]
