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
