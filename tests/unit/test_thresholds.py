"""calibrate(): thresholds from held-out normal errors; severity() bands."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.pipeline.thresholds import DEFAULT_MULTIPLIER, DEFAULT_QUANTILE, ENVELOPE_MARGIN, calibrate, family_quantile, severity

FEATURES = ["temp", "rpm", "vib"]


@pytest.fixture
def errors() -> np.ndarray:
    """Errors (1001, 3) whose per-feature medians are exactly 2, 5 and 0.5.

    Each column is a shuffled odd-length set centred on its median, so the median is known
    without computing it.
    """
    rng = np.random.default_rng(7)
    medians = np.array([2.0, 5.0, 0.5])
    half = rng.uniform(0.0, 1.0, size=(500, 3)) * medians
    columns = np.concatenate([medians - half, medians[None, :], medians + half])
    for j in range(3):
        rng.shuffle(columns[:, j])
    return columns


def test_feature_reference_is_the_per_feature_median(errors: np.ndarray) -> None:
    thresholds = calibrate(errors, FEATURES)
    assert thresholds.feature_reference == [2.0, 5.0, 0.5]


def test_threshold_is_the_quantile_of_the_largest_relative_error_times_the_multiplier(errors: np.ndarray) -> None:
    thresholds = calibrate(errors, FEATURES, quantile=0.99, multiplier=1.5)

    relative = errors / np.array([2.0, 5.0, 0.5])
    assert thresholds.threshold == float(np.quantile(relative.max(axis=1), 0.99) * 1.5)
    assert thresholds.quantile == 0.99
    assert thresholds.multiplier == 1.5
    assert thresholds.method == "quantile"
    for j, name in enumerate(FEATURES):
        assert thresholds.feature_thresholds[name] == pytest.approx(np.quantile(relative[:, j], 0.99) * 1.5)


def test_defaults(errors: np.ndarray) -> None:
    thresholds = calibrate(errors, FEATURES)
    relative = errors / np.array([2.0, 5.0, 0.5])
    assert (thresholds.quantile, thresholds.multiplier) == (DEFAULT_QUANTILE, DEFAULT_MULTIPLIER)
    assert thresholds.threshold == float(np.quantile(relative.max(axis=1), DEFAULT_QUANTILE) * DEFAULT_MULTIPLIER)


def test_threshold_on_a_hand_computed_example() -> None:
    # Ten windows, one feature with median 1.0: relative errors are the errors themselves.
    errors = np.array([[0.5], [0.6], [0.8], [0.9], [1.0], [1.0], [1.1], [1.2], [1.5], [3.0]])
    thresholds = calibrate(errors, ["x"], quantile=0.5, multiplier=2.0)
    assert thresholds.feature_reference == [1.0]
    assert thresholds.threshold == pytest.approx(2.0)  # median 1.0 times 2


def test_zero_median_is_floored_rather_than_dividing_by_zero() -> None:
    errors = np.zeros((20, 2))
    errors[:, 1] = 1.0
    thresholds = calibrate(errors, ["stuck", "ok"])
    assert thresholds.feature_reference == [1e-9, 1.0]
    assert np.isfinite(thresholds.threshold)


def test_envelope_covers_the_central_range_widened_around_its_centre(errors: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    means = np.column_stack([rng.normal(60.0, 2.0, 1001), rng.normal(1500.0, 30.0, 1001), rng.uniform(-1, 1, 1001)])
    q = 0.99

    thresholds = calibrate(errors, FEATURES, window_means=means, quantile=q)

    assert set(thresholds.feature_envelope) == set(FEATURES)
    per_feature = family_quantile(q, len(FEATURES))
    for j, name in enumerate(FEATURES):
        low, high = np.quantile(means[:, j], 1 - per_feature), np.quantile(means[:, j], per_feature)
        env_low, env_high = thresholds.feature_envelope[name]
        assert env_low < low and high < env_high  # contains the central range
        assert (env_low + env_high) / 2 == pytest.approx((low + high) / 2)  # same centre
        assert env_high - env_low == pytest.approx((high - low) * ENVELOPE_MARGIN)  # widened by the margin


def test_family_quantile_splits_the_false_rate_among_the_features() -> None:
    assert family_quantile(0.999, 1) == pytest.approx(0.999)
    assert family_quantile(0.999, 4) == pytest.approx(1 - 0.001 / 4)
    assert family_quantile(0.999, 0) == pytest.approx(0.999)


def test_envelopes_of_many_features_are_crossed_about_as_often_as_the_model_line(errors: np.ndarray) -> None:
    # 40 independent features: with each feature's central range at the plain quantile (1% outside it,
    # both tails), a third of normal windows would leave one; split among the features, about 1% do
    # (before the margin).
    rng = np.random.default_rng(5)
    features = [f"f{j}" for j in range(40)]
    fit, fresh = rng.normal(size=(20_000, 40)), rng.normal(size=(20_000, 40))
    q = 0.995
    envelope = calibrate(errors[:, :1].repeat(40, axis=1), features, window_means=fit, quantile=q).feature_envelope
    bounds = np.array([envelope[f] for f in features])
    centre, half = bounds.mean(axis=1), (bounds[:, 1] - bounds[:, 0]) / 2 / ENVELOPE_MARGIN
    outside = (np.abs(fresh - centre) / half > 1).any(axis=1).mean()
    assert outside < 0.03


def test_no_window_means_no_envelope(errors: np.ndarray) -> None:
    assert calibrate(errors, FEATURES).feature_envelope == {}


@pytest.mark.parametrize("n", [0, 1, 9])
def test_too_few_windows(n: int) -> None:
    with pytest.raises(ValueError, match="at least 10"):
        calibrate(np.ones((n, 3)), FEATURES)


def test_ten_windows_are_enough() -> None:
    thresholds = calibrate(np.ones((10, 3)), FEATURES)
    assert thresholds.feature_reference == [1.0, 1.0, 1.0]
    assert thresholds.threshold == pytest.approx(DEFAULT_MULTIPLIER)  # every relative error is 1


def test_errors_must_be_two_dimensional() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        calibrate(np.ones(100), FEATURES)


@pytest.mark.parametrize("quantile", [0.0, 0.49, 1.0, 1.5, -0.5])
def test_bad_quantile(errors: np.ndarray, quantile: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        calibrate(errors, FEATURES, quantile=quantile)


@pytest.mark.parametrize("quantile", [0.5, 0.999999])
def test_quantile_bounds_that_are_allowed(errors: np.ndarray, quantile: float) -> None:
    assert calibrate(errors, FEATURES, quantile=quantile).quantile == quantile


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (1.0, "warning"),
        (1.49, "warning"),
        (1.5, "major"),
        (2.99, "major"),
        (3.0, "critical"),
        (1e9, "critical"),
        (float("inf"), "critical"),  # the stuck-sensor check reports an infinite ratio
    ],
)
def test_severity_bands(ratio: float, expected: str) -> None:
    assert severity(ratio) == expected


def test_stuck_runs_follow_how_often_a_sensor_repeats_itself() -> None:
    from stream_app.pipeline.thresholds import stuck_runs

    # A continuous sensor seen 450 times without a repeat; the same seen only 50 times; a quantised
    # sensor that repeats half the time (its run would be longer than any window: no check).
    runs = stuck_runs(np.array([0, 0, 225]), 450, ["a", "b", "c"], longest=16)
    assert runs == {"a": 4, "b": 4}
    assert stuck_runs(np.array([0]), 50, ["a"])["a"] == 6


def test_resting_values_are_the_values_a_sensor_held_for_its_stuck_run_in_normal_data() -> None:
    from stream_app.pipeline.thresholds import resting_values

    # a rests at 0 for 6 readings twice and at 2 for 5 once (runs of 5 or more); a run of 4 at 1 is no rest.
    # b never sits still; c has no stuck run (never checked).
    a = [0.1, 0.2] + [0.0] * 6 + [0.3, 1.0, 1.0, 1.0, 1.0, 0.4] + [2.0] * 5 + [0.5] + [0.0] * 6
    b = [0.1 * k for k in range(len(a))]
    readings = np.array([a, b, a], np.float64).T
    rest = resting_values(readings, {"a": 5, "b": 5}, ["a", "b", "c"])
    assert rest == {"a": [0.0, 2.0]}
    assert resting_values(readings, {"a": 5}, ["a", "b", "c"], most=1) == {"a": [0.0]}  # the value rested at most often
    # Stored as the detector's float32 windows hold them, so they compare equal there.
    assert resting_values(np.full((6, 1), 0.1), {"x": 3}, ["x"]) == {"x": [float(np.float32(0.1))]}


def test_calibration_records_where_the_sensors_rested_in_the_readings_it_counted() -> None:
    from stream_app.pipeline.thresholds import calibrate
    from stream_app.training.fit import repeats

    rng = np.random.default_rng(0)
    a = rng.normal(size=600)
    a[100:140] = a[300:330] = 0.0  # idle twice, at 0
    readings = np.stack([a, rng.normal(size=600)], axis=1).astype(np.float32)
    t = calibrate(np.abs(rng.normal(size=(100, 2))), ["a", "b"], repeats=repeats(readings), readings=readings)
    assert set(t.stuck_runs) == {"a", "b"} and t.stuck_runs["a"] <= 30
    assert t.resting_values == {"a": [0.0]}


def test_a_sensor_that_holds_each_days_value_is_stuck_only_past_twice_its_usual_hold() -> None:
    from stream_app.pipeline.thresholds import held_runs

    rng = np.random.default_rng(0)
    # a holds a different value for 24 readings each "day" of 144 (and once for 60: an outage); b rests at 0
    # twice (a resting value, not a hold); c holds one value once; d never sits still.
    a = rng.normal(size=144 * 6)
    for day, length in zip(range(6), [24, 24, 60, 20, 24, 24]):
        a[day * 144 : day * 144 + length] = float(day)
    b = rng.normal(size=len(a))
    b[100:140] = b[300:330] = 0.0
    c = rng.normal(size=len(a))
    c[200:230] = 5.0
    readings = np.stack([a, b, c, rng.normal(size=len(a))], axis=1)
    runs = {"a": 10, "b": 4, "c": 4, "d": 4}
    assert held_runs(readings, runs, ["a", "b", "c", "d"]) == {"a": 48, "b": 4, "c": 4, "d": 4}  # 2 x 24, not 2 x 60
    assert held_runs(readings, {"b": 4}, ["a", "b", "c", "d"]) == {"b": 4}  # a feature never checked stays so


def test_calibration_lengthens_the_stuck_run_of_a_sensor_that_holds_values() -> None:
    from stream_app.pipeline.thresholds import calibrate
    from stream_app.training.fit import repeats

    rng = np.random.default_rng(1)
    a = rng.normal(size=1200)
    for start in range(0, 1200, 144):
        a[start : start + 24] = a[start]
    readings = np.stack([a, rng.normal(size=1200)], axis=1).astype(np.float32)
    t = calibrate(np.abs(rng.normal(size=(100, 2))), ["a", "b"], repeats=repeats(readings), readings=readings)
    assert t.stuck_runs["a"] == 48 and t.stuck_runs["b"] <= 5
    assert t.resting_values == {}  # no value held for 48


@pytest.mark.parametrize("method", ["quantile", "per-feature", "dynamic"])
def test_a_flat_recording_errors_all_zero_still_gets_positive_lines(method: str) -> None:
    # A sensor that never moved in calibration: the model reconstructs it exactly.
    zeros = np.zeros((50, 2), np.float32)
    t = calibrate(zeros, ["a", "b"], peak_errors=zeros, method=method, multiplier=DEFAULT_MULTIPLIER)
    assert t.threshold > 0 and all(v > 0 for v in t.feature_thresholds.values())
    assert t.peak_threshold is not None and t.peak_threshold > 0
