"""Signal, score, threshold and alarms over time, labelled segments shaded: one PNG per key."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamae.evaluate.metrics import segments


def plot_key(path: Path, key: str, ts: np.ndarray, values: np.ndarray, channels: list[str],
             score: np.ndarray, threshold: np.ndarray, anomaly: np.ndarray,
             labels: np.ndarray | None) -> None:
    """Write a two-panel figure for one key (rows in time order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = (ts.astype("float64") * 1e3).astype("datetime64[ms]")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    for j in range(min(values.shape[1], 4)):
        top.plot(t, values[:, j], lw=0.7, label=channels[j])
    top.set_title(f"{key}: signal (shaded: labelled anomalies), alarms in red below")
    top.legend(loc="upper left", fontsize=7, ncol=4)
    bottom.plot(t, score, lw=0.6, color="tab:blue", label="score")
    bottom.plot(t, threshold, lw=0.9, color="tab:orange", label="threshold")
    positive = score[np.isfinite(score) & (score > 0)]
    if len(positive) and positive.max() / max(np.median(positive), 1e-12) > 50:
        bottom.set_yscale("log")
    bottom.legend(loc="upper left", fontsize=7)
    for axis in (top, bottom):
        if labels is not None:
            for a, b in segments(labels):
                axis.axvspan(t[a], t[b - 1], color="gold", alpha=0.3, lw=0)
    for a, b in segments(anomaly):
        bottom.axvspan(t[a], t[b - 1], color="red", alpha=0.25, lw=0)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
