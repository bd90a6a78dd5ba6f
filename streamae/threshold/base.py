"""Per-key state held in one growable 2-D array: the shape every streaming stage shares."""

from __future__ import annotations

import numpy as np


class KeyedState:
    """Rows of float64 state, one per key slot, grown on demand with a fill row."""

    _STATE = ("state",)
    _DTYPES: dict[str, type] = {}  # arrays other than float64

    def __init__(self, fill: np.ndarray, capacity: int = 64) -> None:
        self._fill = np.asarray(fill, dtype=np.float64)
        self.state = np.tile(self._fill, (capacity, 1))

    def ensure(self, slots: int) -> None:
        """Grow every per-key array to hold at least ``slots`` keys."""
        for name in self._STATE:
            arr = getattr(self, name)
            if slots > len(arr):
                extra = max(slots, 2 * len(arr)) - len(arr)
                fill = self._fill if name == "state" else np.zeros(arr.shape[1:], arr.dtype)
                setattr(self, name, np.concatenate([arr, np.tile(fill, (extra, 1))]))

    def reset(self, slots: np.ndarray) -> None:
        """Forget what the given key slots learnt (their thresholds start again)."""
        for name in self._STATE:
            arr = getattr(self, name)
            arr[slots] = self._fill if name == "state" else 0.0

    def _restart(self, slot: int, scores: np.ndarray) -> np.ndarray:
        """Forget one key's state (grown to fit) and return its finite ``scores``: the
        shared start of a threshold's ``refit``."""
        values = np.asarray(scores, dtype=np.float64)
        self.ensure(slot + 1)
        self.reset(np.array([slot]))
        return values[np.isfinite(values)]

    def take(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The given slots' rows (to hand those keys to another pipeline)."""
        return {name: getattr(self, name)[slots] for name in self._STATE}

    def put(self, slots: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        """Write rows from :meth:`take` into the given slots (grown to fit)."""
        self.ensure(int(slots.max()) + 1 if len(slots) else 0)
        for name in self._STATE:
            getattr(self, name)[slots] = self._widened(name, np.asarray(rows[name]))

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).copy() for name in self._STATE}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name in self._STATE:
            setattr(self, name, self._widened(name, np.array(
                state[name], dtype=self._DTYPES.get(name, np.float64))))

    def _widened(self, name: str, rows: np.ndarray) -> np.ndarray:
        """State saved by a version with fewer columns, its new columns at their fill."""
        if name != "state" or rows.ndim != 2 or rows.shape[1] >= len(self._fill):
            return rows
        out = np.tile(self._fill, (len(rows), 1))
        out[:, : rows.shape[1]] = rows
        return out
