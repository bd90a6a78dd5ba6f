"""Windows from frames: the one windowing used by training, transfer, baselines and
embedding (serving builds the same windows incrementally in :mod:`streamae.windows`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from streamae.errors import InputFormatError
from streamae.models.scaler import Scaler
from streamae.types import Frame


@dataclass
class Split:
    """Training windows and every key's newest windows held out (with their keys and the
    row, in their key's series, each ends at)."""

    train: np.ndarray
    val: np.ndarray
    val_keys: np.ndarray
    val_ends: np.ndarray


def key_series(frame: Frame, scaler: Scaler) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Per key (first-seen order): its row indices in event-time order and its scaled,
    forward-filled values ``(rows, C)``, as the pipeline sees them."""
    order = frame.event_time_order()
    keys = frame.keys[order]
    for key in frame.unique_keys():
        rows = order[keys == key]
        mean, std = scaler.stats(key)
        yield key, rows, forward_fill(scaler.transform(frame.values[rows].astype(np.float64),
                                                       mean, std))


def sliding(x: np.ndarray, window: int) -> np.ndarray:
    """Every window of ``window`` consecutive rows of ``x`` ``(n, C)``: ``(n - W + 1, W, C)``
    (a view)."""
    return np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1)


def training_windows(frame: Frame, scaler: Scaler, window: int, stride: int = 1,
                     max_windows: int | None = None, val_fraction: float = 0.0) -> Split:
    """Windows of ``window`` consecutive rows per key. With ``val_fraction``, each key's
    newest share is held out (``window`` rows apart from its training windows, so none
    overlap); a key too short to spare them trains on all it has. Training windows are
    evenly subsampled to ``max_windows`` (every part of history represented), held-out
    ones to a third of that."""
    train, val, val_keys, val_ends = [], [], [], []
    for key, _, x in key_series(frame, scaler):
        if len(x) < window:
            continue
        view = sliding(x, window)
        n_val = int(len(view) * val_fraction)
        if n_val and len(view) - n_val - window >= 1:
            val.append(view[len(view) - n_val:])
            val_keys.append(np.full(n_val, key, dtype=object))
            val_ends.append(np.arange(len(view) - n_val, len(view)) + window - 1)
            view = view[: len(view) - n_val - window]
        train.append(view[::stride])
    if not train:
        raise InputFormatError(f"no key has {window} rows to train on: shorten window.size "
                               "or add history")
    channels = frame.values.shape[1]
    train_w = _subsample(train, max_windows, window, channels)
    if not val:
        return Split(train_w, np.zeros((0, window, channels), np.float32),
                     np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64))
    cap = max(max_windows // 3, 1) if max_windows else None
    keys = np.concatenate(val_keys)
    pick = _pick(len(keys), cap)
    return Split(train_w, _subsample(val, cap, window, channels), keys[pick],
                 np.concatenate(val_ends)[pick])


def _pick(total: int, cap: int | None) -> np.ndarray:
    if not cap or total <= cap:
        return np.arange(total)
    return np.linspace(0, total - 1, cap).round().astype(np.int64)


def _subsample(chunks: list[np.ndarray], cap: int | None, window: int,
               channels: int) -> np.ndarray:
    total = sum(len(c) for c in chunks)
    pick = _pick(total, cap)
    if len(pick) == total:
        return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
    bounds = np.cumsum([0] + [len(c) for c in chunks])
    out = np.empty((len(pick), window, channels), dtype=np.float32)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        sel = pick[(pick >= lo) & (pick < hi)]
        at = np.searchsorted(pick, lo)
        out[at: at + len(sel)] = chunks[i][sel - lo]
    return out


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


def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray | None:
    """Autocorrelation of ``x`` ``(n, C)`` at lags 0..``max_lag`` (+1), averaged over its
    non-constant channels; None if all are constant."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    spec = np.fft.rfft(x, 2 * len(x), axis=0)
    ac = np.fft.irfft(spec * np.conj(spec), axis=0)[: max_lag + 2]
    ok = ac[0] > 1e-12
    return (ac[:, ok] / ac[0, ok]).mean(axis=1) if ok.any() else None


def peak_lag(ac: np.ndarray, low: int, high: int, least: float = 0.0) -> int | None:
    """The lag in ``low..high`` of the highest local maximum of ``ac`` reaching ``least``."""
    lags = np.arange(max(low, 1), min(high, len(ac) - 2) + 1)
    peaks = lags[(ac[lags] > ac[lags - 1]) & (ac[lags] >= ac[lags + 1])]
    if not len(peaks) or ac[peaks].max() < least:
        return None
    return int(peaks[np.argmax(ac[peaks])])


def dominant_period(frame: Frame, scaler: Scaler, low: int, high: int,
                    fallback: int = 64) -> int:
    """The lag in ``low..high`` where the training data's autocorrelation (averaged over
    keys, weighted by length, and channels) has its highest local maximum, if that is
    clearly periodic (correlation >= 0.3); otherwise ``fallback`` kept within the bounds."""
    total, weight = np.zeros(high + 2), 0
    for _, _, x in key_series(frame, scaler):
        x = x[-20_000:]
        ac = autocorrelation(x, high) if len(x) >= 2 * high else None
        if ac is not None:
            total += ac * len(x)
            weight += len(x)
    lag = peak_lag(total / weight, low, high, 0.3) if weight else None
    return lag if lag is not None else int(min(max(fallback, low), high))
