"""The NAB-style event-window score: known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_app.lab.nab import STANDARD, events_score, label_windows, scaled_sigmoid, series_score

N = 100


def _truth(*spans: tuple[int, int], n: int = N) -> np.ndarray:
    truth = np.zeros(n, bool)
    for first, last in spans:
        truth[first : last + 1] = True
    return truth


def _at(*points: int, n: int = N) -> np.ndarray:
    d = np.zeros(n, bool)
    d[list(points)] = True
    return d


def _score(detections: np.ndarray, truth: np.ndarray) -> float:
    result = events_score([(np.arange(len(truth)) * 60_000, detections, truth)])
    assert result.score is not None
    return result.score


def test_scaled_sigmoid_matches_nab() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.9866
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.0) == pytest.approx(2 / (1 + math.exp(15)) - 1)
    assert scaled_sigmoid(3.01) == -1.0


def test_perfect_detector_scores_100_and_null_detector_0() -> None:
    truth = _truth((20, 29), (60, 64))
    assert _score(_at(20, 60), truth) == pytest.approx(100.0)
    assert _score(np.zeros(N, bool), truth) == pytest.approx(0.0)
    # Later detections inside a window cost nothing.
    assert _score(_at(20, 21, 25, 60, 64), truth) == pytest.approx(100.0)


def test_a_false_detection_before_any_window_costs_the_fp_weight() -> None:
    truth = _truth((20, 29))
    # raw = 1 - 0.11; null -1, perfect 1: 100 * (0.89 + 1) / 2 = 94.5
    assert _score(_at(5, 20), truth) == pytest.approx(94.5)


def test_a_late_detection_earns_less() -> None:
    truth = _truth((20, 29))  # width 10; a detection at 24 sits at -(29 - 24 + 1)/10 = -0.6
    raw = scaled_sigmoid(-0.6) / scaled_sigmoid(-1.0)
    assert _score(_at(24), truth) == pytest.approx(100 * (raw + 1) / 2)
    assert _score(_at(29), truth) < _score(_at(24), truth) < _score(_at(20), truth)


def test_a_false_detection_just_after_a_window_costs_little_and_far_after_the_full_weight() -> None:
    truth = _truth((20, 29))  # width 10: past the window in units of width - 1 = 9
    near = series_score(_at(20, 31), label_windows(truth))
    assert near.raw == pytest.approx(1 + 0.11 * scaled_sigmoid(2 / 9)) and near.false_detections == 1
    far = series_score(_at(20, 90), label_windows(truth))
    assert far.raw == pytest.approx(1 - 0.11)


def test_series_are_summed_before_normalizing() -> None:
    a, b = _truth((20, 29)), _truth((50, 59))
    result = events_score([(np.arange(N), _at(20), a), (np.arange(N), np.zeros(N, bool), b)])
    assert result.windows == 2 and result.detected == 1
    assert (result.null, result.perfect, result.raw) == (-2.0, 2.0, 0.0)
    assert result.score == pytest.approx(50.0) and result.profile == STANDARD.name


def test_windows_widen_to_nab_size_and_merge() -> None:
    truth = _truth((40, 41), (46, 47))
    assert label_windows(truth) == [(40, 41), (46, 47)]
    assert label_windows(truth, window_share=0.1) == [(39, 43), (45, 49)]  # 5 points each
    assert label_windows(truth, window_share=0.2) == [(36, 51)]  # 10 points each, overlapping: merged
    assert label_windows(_truth((0, 1)), window_share=0.2) == [(0, 10)]  # cut at the series' start


def test_no_windows_means_no_score_and_probation_is_not_scored() -> None:
    assert events_score([(np.arange(N), _at(5), np.zeros(N, bool))]).score is None
    truth = _truth((50, 59))
    assert events_score([(np.arange(N), _at(5, 50), truth)], probation_share=0.15).score == pytest.approx(100.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        events_score([(np.zeros(N), _at(5), truth)])


def test_evaluate_reports_the_score_of_episode_openings() -> None:
    from stream_app.lab.evaluate import EvaluateOptions, Model, evaluate_shared

    from tests.support.builders import episode_detector, labelled_series

    report, _ = evaluate_shared(Model(episode_detector()), [labelled_series("d")], EvaluateOptions(), source="t")
    # The episode opens at reading 12 in the labelled run 10..19: position -(19 - 12 + 1) / 10.
    assert report.events_score is not None and report.events_score.detected == 1
    expected = 100 * (scaled_sigmoid(-0.8) / scaled_sigmoid(-1.0) + 1) / 2
    assert report.events_score.score == pytest.approx(expected)
