"""Signal, score, threshold and alarms over time, labelled segments shaded: one PNG per key."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamae.evaluate.metrics import segments

SHOWN = 4  # channels drawn per key
MIN_WIDTH = 0.004  # shortest drawn span, as a share of the time axis


def plot_key(path: Path, key: str, ts: np.ndarray, values: np.ndarray, channels: list[str],
             score: np.ndarray, threshold: np.ndarray, anomaly: np.ndarray,
             labels: np.ndarray | None, order: list[int] | None = None,
             evaluated: np.ndarray | None = None) -> None:
    """Write a two-panel figure for one key (rows in time order). ``order``: channels by
    how much they carry the key's alarms (attribution), first drawn; ``evaluated``: rows
    that count, the others (training head, warm-up) shaded grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = (ts.astype("float64") * 1e3).astype("datetime64[ms]")
    span = (t[-1] - t[0]) if len(t) > 1 else np.timedelta64(1, "m")
    least = max(span * MIN_WIDTH, np.timedelta64(1, "ms"))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    order = list(order if order is not None else range(values.shape[1]))
    drawn = order[:SHOWN]
    for j in drawn:
        top.plot(t, values[:, j], lw=0.7, label=channels[j])
    hidden = len(channels) - len(drawn)
    more = f" ({len(drawn)} of {len(channels)} channels, those behind the alarms)" if hidden else ""
    top.set_title(f"{key}: signal{more}; gold: labelled anomalies, red: alarms")
    if len(channels) > 1:
        top.legend(loc="upper left", fontsize=7, ncol=4)
    bottom.plot(t, score, lw=0.6, color="tab:blue", label="score")
    bottom.plot(t, threshold, lw=0.9, color="tab:orange", label="threshold")
    _robust_limits(bottom, t, score, threshold)
    bottom.legend(loc="upper left", fontsize=7)
    for axis in (top, bottom):
        if labels is not None:
            for a, b in segments(labels):
                _span(axis, t, a, b, least, color="gold", alpha=0.35)
        if evaluated is not None:
            for a, b in segments(~evaluated.astype(bool)):
                _span(axis, t, a, b, least, color="grey", alpha=0.12)
    for a, b in segments(anomaly):
        _span(bottom, t, a, b, least, color="red", alpha=0.3)
    if evaluated is not None and not evaluated.all():
        top.text(0.995, 0.02, "grey: training / warm-up, not evaluated", ha="right",
                 transform=top.transAxes, fontsize=7, color="#555")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _span(axis, t: np.ndarray, a: int, b: int, least: np.timedelta64, **style) -> None:
    """Rows [a, b) shaded, at least ``least`` wide so a one-point segment shows."""
    lo, hi = t[a], t[b - 1]
    if hi - lo < least:
        mid = lo + (hi - lo) / 2
        lo, hi = mid - least / 2, mid + least / 2
    axis.axvspan(lo, hi, lw=0, **style)


def _robust_limits(axis, t: np.ndarray, score: np.ndarray, threshold: np.ndarray) -> None:
    """A linear score axis up to a high quantile (and the threshold); points above it are
    drawn as triangles on the top edge."""
    finite = score[np.isfinite(score)]
    if not len(finite):
        return
    thr = threshold[np.isfinite(threshold)]
    top = max(float(np.quantile(finite, 0.995)), float(np.quantile(thr, 0.99)) if len(thr)
              else 0.0) * 1.15
    low = min(0.0, float(finite.min()))
    if top <= low:
        return
    axis.set_ylim(low, top)
    over = np.isfinite(score) & (score > top)
    if over.any():
        axis.plot(t[over], np.full(over.sum(), top * 0.985), "^", ms=3, color="tab:blue",
                  label=f"above the axis ({int(over.sum())} points)")
