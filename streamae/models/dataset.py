"""Training windows from a frame: per key, scaled, gaps in values forward-filled."""

from __future__ import annotations

import numpy as np

from streamae.models.scaler import Scaler
from streamae.types import Frame


def training_windows(frame: Frame, scaler: Scaler, window: int, stride: int = 1,
                     max_windows: int | None = None) -> np.ndarray:
    """All windows of ``window`` consecutive rows per key (event-time order), ``(n, W, C)``.

    Evenly subsampled to ``max_windows`` so that every part of history is represented.
    """
    chunks = []
    order = frame.event_time_order()
    keys = frame.keys[order]
    for key in frame.unique_keys():
        rows = order[keys == key]
        if len(rows) < window:
            continue
        mean, std = scaler.stats(key)
        scaled = forward_fill(scaler.transform(frame.values[rows].astype(np.float64), mean, std))
        view = np.lib.stride_tricks.sliding_window_view(scaled, window, axis=0)  # (n, C, W)
        chunks.append(view[::stride].transpose(0, 2, 1))
    if not chunks:
        raise ValueError(f"no key has {window} rows: shorten window.size or add history")
    total = sum(len(c) for c in chunks)
    if max_windows and total > max_windows:
        pick = np.linspace(0, total - 1, max_windows).round().astype(np.int64)
        bounds = np.cumsum([0] + [len(c) for c in chunks])
        out = np.empty((max_windows, window, frame.values.shape[1]), dtype=np.float32)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            sel = pick[(pick >= lo) & (pick < hi)]
            out[np.searchsorted(pick, lo): np.searchsorted(pick, lo) + len(sel)] = chunks[i][sel - lo]
        return out
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def forward_fill(x: np.ndarray) -> np.ndarray:
    """Replace non-finite values by the last finite one in the same column (0 before any)."""
    x = np.array(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    idx = np.where(~bad, np.arange(len(x))[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    filled = x[idx, np.arange(x.shape[1])]
    filled[~np.isfinite(filled)] = 0.0
    return filled
