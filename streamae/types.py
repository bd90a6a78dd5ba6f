"""Columnar point batches: the one data shape that flows through streamae."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """Rows of points in columns.

    ``timestamps`` are float64 epoch seconds, ``keys`` an object array of sensor ids,
    ``values`` a float32 ``(rows, channels)`` matrix, ``labels`` optional int8 ground
    truth (evaluation only: never a model input).
    """

    timestamps: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    channels: list[str]
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.timestamps)
        assert self.values.ndim == 2, f"values must be (rows, channels), got {self.values.shape}"
        assert len(self.keys) == n and len(self.values) == n, "columns must have equal length"
        assert self.values.shape[1] == len(self.channels), "one channel name per value column"
        assert self.labels is None or len(self.labels) == n, "one label per row"

    def __len__(self) -> int:
        return len(self.timestamps)

    def take(self, index: np.ndarray | slice) -> Frame:
        """Rows selected by a slice, boolean mask or index array."""
        return Frame(self.timestamps[index], self.keys[index], self.values[index], self.channels,
                     None if self.labels is None else self.labels[index])

    @staticmethod
    def concat(frames: list[Frame]) -> Frame:
        """Stack frames with the same channels."""
        channels = frames[0].channels
        for f in frames[1:]:
            if f.channels != channels:
                raise ValueError(f"channels differ: {channels} vs {f.channels}")
        has_labels = all(f.labels is not None for f in frames)
        return Frame(
            np.concatenate([f.timestamps for f in frames]),
            np.concatenate([f.keys for f in frames]),
            np.concatenate([f.values for f in frames]),
            channels,
            np.concatenate([f.labels for f in frames]) if has_labels else None,
        )

    def event_time_order(self) -> np.ndarray:
        """Stable permutation sorting rows by timestamp (ties keep input order)."""
        return np.argsort(self.timestamps, kind="stable")

    def unique_keys(self) -> list[str]:
        """Keys in order of first appearance."""
        _, first = np.unique(self.keys, return_index=True)
        return [str(self.keys[i]) for i in sorted(first)]
