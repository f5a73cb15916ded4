"""Detection quality metrics on hand-made cases with known answers (exact fractions)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from stream_app.lab.quality import DeviceTrace, event_metrics, openings, point_metrics, runs

TRUTH = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 0], bool)
PRED = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0], bool)


def test_point_counts_and_rates_are_exact() -> None:
    m = point_metrics(TRUTH, PRED)
    assert (m.tp, m.fp, m.tn, m.fn) == (2, 1, 5, 2)
    assert m.precision == float(Fraction(2, 3))
    assert m.recall == float(Fraction(2, 4))
    assert m.f1 == float(Fraction(4, 7))  # 2PR/(P+R) = 2TP/(2TP+FP+FN)
    assert m.far == float(Fraction(1, 6))
    assert m.mar == float(Fraction(2, 4))


def test_one_point_more_changes_every_affected_metric() -> None:
    pred = PRED.copy()
    pred[4] = True  # one more false alarm
    m = point_metrics(TRUTH, pred)
    assert (m.fp, m.tn) == (2, 4)
    assert m.far == float(Fraction(2, 6))
    assert m.precision == float(Fraction(2, 4))
    assert m.f1 == float(Fraction(4, 8))


def test_metrics_of_empty_classes_are_zero_not_errors() -> None:
    m = point_metrics(np.zeros(4, bool), np.zeros(4, bool))
    assert (m.precision, m.recall, m.f1, m.far, m.mar) == (0.0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        point_metrics(np.zeros(3, bool), np.zeros(4, bool))


def test_sum_of_point_metrics_adds_counts() -> None:
    m = point_metrics(TRUTH, PRED) + point_metrics(TRUTH, PRED)
    assert (m.tp, m.fp, m.tn, m.fn) == (4, 2, 10, 4)


def test_runs_and_openings() -> None:
    mask = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], bool)
    assert runs(mask) == [(0, 1), (4, 4), (6, 8)]
    assert openings(mask).tolist() == [0, 4, 6]
    assert runs(np.zeros(0, bool)) == []


def test_openings_read_off_the_detector_count_an_episode_that_replaces_another_at_once() -> None:
    # One stretch of open points, two episodes: the second opened at 7 as the first closed (a new fault).
    is_open = np.array([1, 1, 0, 0, 1, 1, 1, 1, 1], bool)
    opened = np.zeros(9, bool)
    opened[[4, 7]] = True  # the episode open at the first point opened before the evaluated rows
    assert openings(is_open).tolist() == [0, 4]
    assert openings(is_open, opened).tolist() == [0, 4, 7]


def _trace(device: str, n: int, period_ms: int, failures: list[tuple[int, int]], opens: list[tuple[int, int]]) -> DeviceTrace:
    truth = np.zeros(n, bool)
    for a, b in failures:
        truth[a : b + 1] = True
    is_open = np.zeros(n, bool)
    for a, b in opens:
        is_open[a : b + 1] = True
    return DeviceTrace(device_id=device, ts=1_000_000 + np.arange(n, dtype=np.int64) * period_ms, truth=truth, is_open=is_open)


def test_event_delays_false_alerts_and_rate_per_device_hour() -> None:
    a = _trace("a", 100, 1000, failures=[(10, 19), (60, 69)], opens=[(13, 25), (40, 45), (75, 80)])
    b = _trace("b", 100, 2000, failures=[], opens=[(5, 8)])
    e = event_metrics([a, b], grace=5)
    assert (e.injected, e.detected, e.episodes) == (2, 1, 4)
    first, second = e.failures
    assert (first.detected_at, first.delay_samples, first.delay_s) == (13, 3, 3.0)
    assert second.detected_at is None  # the episode at 75 opens 6 samples after its end: beyond the grace
    assert e.false_episodes == 3  # a@40, a@75, b@5
    assert e.normal_device_hours == pytest.approx((80 * 1 + 100 * 2) / 3600)
    assert e.false_per_device_hour == pytest.approx(3 / ((80 + 200) / 3600))
    assert (e.delay_samples_median, e.delay_samples_max, e.delay_s_median, e.delay_s_max) == (3.0, 3, 3.0, 3.0)


def test_grace_boundary_is_inclusive() -> None:
    inside = event_metrics([_trace("a", 50, 1000, failures=[(10, 19)], opens=[(24, 30)])], grace=5)
    outside = event_metrics([_trace("a", 50, 1000, failures=[(10, 19)], opens=[(25, 30)])], grace=5)
    assert (inside.detected, inside.false_episodes) == (1, 0)
    assert (outside.detected, outside.false_episodes) == (0, 1)


def test_delay_in_seconds_uses_timestamps_and_median_of_two() -> None:
    a = _trace("a", 100, 500, failures=[(10, 19)], opens=[(12, 20)])  # 2 samples, 1.0 s
    b = _trace("b", 100, 1000, failures=[(30, 49)], opens=[(36, 50)])  # 6 samples, 6.0 s
    e = event_metrics([a, b], grace=0)
    assert (e.delay_samples_median, e.delay_samples_max) == (4.0, 6)
    assert (e.delay_s_median, e.delay_s_max) == (3.5, 6.0)
    assert e.false_episodes == 0
