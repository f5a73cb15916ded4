"""The threshold methods (pipeline/line_methods.py): each calibrates its line and applies it, found by name."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.pipeline.line_methods import METHODS, Dynamic, PerFeature, Quantile, ewma, line_method, telemanom_epsilon
from stream_app.pipeline.thresholds import calibrate
from tests.support.builders import thresholds

FEATURES = ["a", "b"]


def _relative() -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.abs(rng.normal(1.0, 0.3, (400, 2))) * np.array([1.0, 2.0])


def test_methods_are_found_by_the_name_the_card_stores() -> None:
    assert METHODS == {"quantile": Quantile, "per-feature": PerFeature, "dynamic": Dynamic}
    assert all(line_method(name).name == name for name in METHODS)


def test_an_unknown_method_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown threshold method 'mad'; known: quantile, per-feature, dynamic"):
        line_method("mad")
    with pytest.raises(ValueError, match="unknown threshold method 'mad'"):
        calibrate(_relative(), FEATURES, method="mad")


def test_quantile_calibrates_the_score_quantile_and_applies_it_window_by_window() -> None:
    relative = _relative()
    fields = Quantile.calibrate(relative, FEATURES, quantile=0.99, multiplier=1.5, ewma_alpha=0.2)
    assert fields["threshold"] == pytest.approx(np.quantile(relative.max(axis=1), 0.99) * 1.5)
    assert (fields["ewma_alpha"], fields["z"]) == (None, None)
    line = Quantile(thresholds(2, threshold=2.0), FEATURES)
    score = np.array([1.0, 4.0], np.float32)
    assert line.ratio(["d1", "d1"], score, np.zeros((2, 2), np.float32)).tolist() == [0.5, 2.0]


def test_per_feature_applies_each_features_own_line() -> None:
    relative = _relative()
    fields = PerFeature.calibrate(relative, FEATURES, quantile=0.99, multiplier=2.0, ewma_alpha=0.2)
    assert fields["feature_thresholds"]["b"] == pytest.approx(np.quantile(relative[:, 1], 0.99) * 2.0)
    # "b" has its own line (4.0); "a" has none, so it is held to the window line (2.0).
    line = PerFeature(thresholds(2, threshold=2.0, feature_thresholds={"b": 4.0}), FEATURES)
    errors = np.array([[1.0, 6.0], [3.0, 2.0]], np.float32)
    assert line.ratio(["d1", "d2"], errors.max(axis=1), errors).tolist() == [1.5, 1.5]


def test_dynamic_calibrates_telemanoms_epsilon_of_the_smoothed_scores() -> None:
    relative = _relative()
    fields = Dynamic.calibrate(relative, FEATURES, quantile=0.99, multiplier=1.1, ewma_alpha=0.3)
    epsilon, z = telemanom_epsilon(ewma(relative.max(axis=1), 0.3))
    assert fields["threshold"] == pytest.approx(epsilon * 1.1)
    assert (fields["ewma_alpha"], fields["z"]) == (0.3, z)


def test_dynamic_smooths_each_device_on_its_own_and_causally() -> None:
    line = Dynamic(thresholds(2, threshold=2.0, method="dynamic", ewma_alpha=0.5), FEATURES)
    none = np.zeros((4, 2), np.float32)
    # A device's first score is its level; then level = 0.5 * score + 0.5 * level, each device apart.
    ratio = line.ratio(["d1", "d2", "d1", "d1"], np.array([4.0, 8.0, 0.0, 2.0], np.float32), none)
    assert ratio.tolist() == [2.0, 4.0, 1.0, 1.0]
    assert line.smoothed == {"d1": 2.0, "d2": 8.0}
    # The same as smoothing one device's scores as a series (calibration's EWMA).
    assert ewma(np.array([4.0, 0.0, 2.0]), 0.5).tolist() == [4.0, 2.0, 2.0]
    line.forget("d1")
    assert line.ratio(["d1"], np.array([6.0], np.float32), none[:1]).tolist() == [3.0]


def test_dynamic_state_carries_over_to_the_next_model_version() -> None:
    old = Dynamic(thresholds(2, method="dynamic", ewma_alpha=0.5), FEATURES)
    old.ratio(["d1"], np.array([4.0], np.float32), np.zeros((1, 2), np.float32))
    new = Dynamic(thresholds(2, threshold=2.0, method="dynamic", ewma_alpha=0.5), FEATURES)
    new.carry_over(old)
    assert new.ratio(["d1"], np.array([0.0], np.float32), np.zeros((1, 2), np.float32)).tolist() == [1.0]
    new.carry_over(Quantile(thresholds(2), FEATURES))  # a method without state leaves it be
    assert new.smoothed == {"d1": 2.0}


@pytest.mark.parametrize("name", list(METHODS))
def test_calibration_stores_the_methods_fields(name: str) -> None:
    relative = _relative()
    t = calibrate(relative, FEATURES, method=name, quantile=0.99, multiplier=1.25, ewma_alpha=0.2)
    expected = line_method(name).calibrate(relative / np.median(relative, axis=0), FEATURES, quantile=0.99, multiplier=1.25, ewma_alpha=0.2)
    assert t.method == name
    assert (t.threshold, t.feature_thresholds, t.ewma_alpha, t.z) == tuple(expected.values())
