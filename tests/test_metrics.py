import math

import numpy as np
import pytest

from streamae.evaluate.metrics import (average_precision, event_scores, false_alarms_per_day,
                                       point_scores, roc_auc, segments)


def test_segments():
    assert segments(np.array([0, 1, 1, 0, 1])) == [(1, 3), (4, 5)]
    assert segments(np.zeros(3)) == []


def test_average_precision_hand_computed():
    # ranking by score: pos, neg, pos, neg -> precision 1 at recall .5, 2/3 at recall 1
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert average_precision(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert math.isnan(average_precision(np.zeros(3), np.arange(3.0)))
    # no score yet ranks last, not first
    assert average_precision(np.array([1, 0]), np.array([1.0, np.nan])) == 1.0


def test_average_precision_ties_are_grouped():
    assert average_precision(np.array([1, 0]), np.array([1.0, 1.0])) == pytest.approx(0.5)


def test_roc_auc_hand_computed():
    labels = np.array([1, 0, 1, 0])
    assert roc_auc(labels, np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx(0.75)
    assert roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_event_scores_count_hits_misses_and_false_alarms():
    ts = np.arange(20.0) * 60
    labels = np.zeros(20, int)
    labels[5:8] = 1      # found by an alarm at rows 6-7 (delay 60 s)
    labels[12:14] = 1    # missed
    alarm = np.zeros(20, int)
    alarm[6:8] = 1
    alarm[16] = 1        # false alarm
    ev = event_scores(labels, alarm, ts)
    assert (ev.found, ev.segments, ev.alarms, ev.false_alarms) == (1, 2, 2, 1)
    assert ev.precision == 0.5 and ev.recall == 0.5 and ev.f1 == 0.5
    assert ev.delays == [60.0]
    # with 3 minutes of late tolerance the alarm at row 16 counts for the second segment
    late = event_scores(labels, alarm, ts, late=180)
    assert late.recall == 1.0 and late.false_alarms == 0


def test_early_tolerance_gives_negative_delay():
    ts = np.arange(10.0)
    labels = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    alarm = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    assert event_scores(labels, alarm, ts).recall == 0.0
    ev = event_scores(labels, alarm, ts, early=2)
    assert ev.recall == 1.0 and ev.delays == [-2.0]


def test_point_scores_and_false_alarm_rate():
    labels = np.array([0, 1, 1, 0, 0])
    alarm = np.array([0, 1, 0, 0, 1])
    assert point_scores(labels, alarm) == (0.5, 0.5, 0.5)
    ts = np.arange(5) * 21600.0  # 6 h steps; steps ending on normal rows 3 and 4: 0.5 days
    assert false_alarms_per_day(labels, alarm, ts) == pytest.approx(1 / 0.5)


def test_vus_pr_reduces_to_ap_without_buffer_and_credits_near_misses():
    from streamae.evaluate.metrics import average_precision, soft_labels, vus_pr

    labels = np.zeros(100, dtype=np.int8)
    labels[50:55] = 1
    exact = np.zeros(100)
    exact[50:55] = 1.0
    near = np.zeros(100)
    near[45:50] = 1.0  # fires just before the segment
    assert vus_pr(labels, exact, max_buffer=0) == average_precision(labels, exact) == 1.0
    assert average_precision(labels, near) < 0.2 < vus_pr(labels, near, max_buffer=10)
    w = soft_labels(labels, 3)
    np.testing.assert_allclose(w[47:50], np.sqrt(1 - np.array([3, 2, 1]) / 4))
    assert w[50] == 1 and w[46] == 0


def test_point_adjusted_f1_is_inflated_and_labelled():
    from streamae.evaluate.metrics import point_adjusted_f1, point_scores

    labels = np.zeros(100, dtype=np.int8)
    labels[10:60] = 1
    anomaly = np.zeros(100, dtype=np.int8)
    anomaly[30] = 1  # one lucky point in a 50-row segment
    assert point_scores(labels, anomaly)[2] < 0.05
    assert point_adjusted_f1(labels, anomaly) == 1.0


def test_nab_score_hand_computed_from_the_published_rules():
    from streamae.evaluate.nab import PROFILES, normalized, scaled_sigmoid, score_series

    # NAB's documented anchors: S(-1) = 0.98661, S(-0.5) = 0.84828, S(0) = 0
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0 and scaled_sigmoid(3.0) == -1.0
    labels = np.zeros(100, dtype=np.int8)
    labels[40:50] = 1  # one window of width 10; probation = floor(0.15 * 100) = 15 rows
    s = score_series(labels, np.array([5, 45, 47, 70]))
    # row 5: probationary, ignored. Row 45: p = -(49 - 45 + 1) / 10 = -0.5 -> 0.84828 /
    # 0.98661 = 0.85980 (row 47 scores lower; the window keeps its best). Row 70: p =
    # |49 - 70| / 9 = 2.333 -> S = -0.99998, times fp weight 0.11.
    tp = 0.84828 / 0.98661
    fp = 2 / (1 + math.exp(5 * 21 / 9)) - 1
    assert s.raw["standard"] == pytest.approx(tp + 0.11 * fp, abs=1e-4)
    assert s.raw["reward_low_fp_rate"] == pytest.approx(tp + 0.22 * fp, abs=1e-4)
    assert s.null["reward_low_fn_rate"] == -2.0 and s.perfect["standard"] == 1.0
    assert normalized([s])["standard"] == pytest.approx(100 * (tp + 0.11 * fp + 1) / 2, abs=1e-2)
    # NAB's references: detecting nothing scores 0, each window at its first row 100,
    # a detection before any window costs exactly the fp weight
    assert normalized([score_series(labels, np.array([]))])["standard"] == 0.0
    assert normalized([score_series(labels, np.array([40]))])["standard"] == pytest.approx(100)
    early = score_series(labels, np.array([20, 40]))
    assert early.raw["standard"] == pytest.approx(1.0 - PROFILES["standard"]["fp"])
