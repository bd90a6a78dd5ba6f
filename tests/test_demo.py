"""The demo's detection summary: which injected anomalies an alarm found."""

from __future__ import annotations

import numpy as np

from streamae.config import Config
from streamae.demo import detection_span, detection_summary
from streamae.types import Frame


def _iso(seconds: float) -> str:
    return str(np.datetime64(int(seconds * 1000), "ms")) + "Z"


def test_an_alarm_counts_from_a_hop_before_its_anomaly_to_its_lag_after():
    ts = np.arange(200) * 60.0
    labels = np.zeros(200, dtype=np.int8)
    labels[100:110] = 1
    frame = Frame(ts, np.full(200, "k", dtype=object), np.zeros((200, 1), np.float32),
                  ["c"], labels)
    config = Config()
    lead, lag = detection_span(config, frame)
    assert lead == (config.window.hop - 1) * 60.0
    opens = {"early but caused": 100 * 60.0 - lead, "too early": 100 * 60.0 - lead - 60.0,
             "late but caused": 109 * 60.0 + lag, "too late": 109 * 60.0 + lag + 60.0}
    for name, at in opens.items():
        events = [{"key": "k", "status": "open", "start": _iso(at)}]
        got = detection_summary(frame, events, lead, lag)
        caused = "but caused" in name
        assert (got["detected"], got["false_alarms"]) == ((1, 0) if caused else (0, 1)), name
