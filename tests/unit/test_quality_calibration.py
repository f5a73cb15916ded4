"""Threshold calibration methods: per-feature, telemanom's dynamic threshold, stuck-check eligibility."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.pipeline.line_methods import ewma, telemanom_epsilon
from stream_app.pipeline.thresholds import calibrate

FEATURES = ["a", "b"]


def test_ewma_is_causal_and_exact() -> None:
    assert ewma(np.array([0.0, 10.0, 10.0]), 0.5).tolist() == [0.0, 5.0, 7.5]
    assert ewma(np.array([4.0, 0.0]), 0.25, start=0.0).tolist() == [1.0, 0.75]


def test_telemanom_prunes_exactly_the_outlying_run() -> None:
    e = np.concatenate([np.ones(96) + 0.01 * np.sin(np.arange(96)), [10.0, 10.0, 10.0], np.ones(1)])
    epsilon, z = telemanom_epsilon(e)
    assert e[:96].max() < epsilon <= 10.0
    assert int((e >= epsilon).sum()) == 3
    # Ties between z values that prune the same points go to the largest z, as in telemanom.
    mean, sd = e.mean(), e.std()
    assert z == max(v for v in np.arange(2.5, 12.0, 0.5) if mean + v * sd <= 10.0)


def test_telemanom_without_outliers_takes_the_limit() -> None:
    e = np.ones(50)
    assert telemanom_epsilon(e) == (1.0, 12.0)  # sd 0: nothing can be pruned
    flat = np.linspace(1.0, 2.0, 200)  # no point lies 2.5 sd above the mean
    epsilon, z = telemanom_epsilon(flat)
    assert z == 12.0 and epsilon == pytest.approx(flat.mean() + 12.0 * flat.std())


def _errors() -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.abs(rng.normal(1.0, 0.2, (500, 2))) * np.array([1.0, 4.0])


def test_dynamic_threshold_is_epsilon_of_smoothed_scores_times_multiplier() -> None:
    errors = _errors()
    t = calibrate(errors, FEATURES, method="dynamic", multiplier=1.1, ewma_alpha=0.3)
    scores = (errors / np.median(errors, axis=0)).max(axis=1)
    epsilon, z = telemanom_epsilon(ewma(scores, 0.3))
    assert (t.method, t.ewma_alpha, t.z) == ("dynamic", 0.3, z)
    assert t.threshold == pytest.approx(epsilon * 1.1)


def test_per_feature_thresholds_are_each_features_quantile() -> None:
    errors = _errors()
    t = calibrate(errors, FEATURES, method="per-feature", quantile=0.99, multiplier=2.0)
    relative = errors / np.median(errors, axis=0)
    assert t.method == "per-feature"
    assert t.feature_thresholds["b"] == pytest.approx(np.quantile(relative[:, 1], 0.99) * 2.0)


def test_stuck_check_only_for_features_that_never_sat_still() -> None:
    ranges = np.array([[0.1, 0.0], [0.2, 0.3]])
    assert calibrate(_errors(), FEATURES, window_ranges=ranges).stuck_features == ["a"]
    assert calibrate(_errors(), FEATURES).stuck_features is None  # not given: every feature, as before


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown threshold method"):
        calibrate(_errors(), FEATURES, method="magic")


def test_stuck_check_fires_on_half_a_window_of_repeats_and_spares_sensors_that_repeat_in_training() -> None:
    from stream_app.training.fit import TrainingConfig, run_ranges

    assert TrainingConfig(window=16).stuck_run == 8 and TrainingConfig(window=3).stuck_run == 2
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(4, 16, 2)).astype(np.float32)
    windows[1, 5:13, 0] = 0.5  # a run of 8 equal readings inside the window
    windows[2, 10:, 0] = 0.5  # a run of 6: shorter than the stuck run
    windows[3, :, 1] = 1.0  # sensor b repeats for the whole window
    ranges = run_ranges(windows, 8)
    assert ranges.shape == (4, 2)
    assert (ranges[:, 0] == 0).tolist() == [False, True, False, False]
    assert calibrate(_errors(), FEATURES, window_ranges=np.abs(rng.normal(size=(40, 2))) + ranges[:1]).stuck_features == ["a", "b"]
    assert calibrate(_errors(), FEATURES, window_ranges=ranges).stuck_features == []
