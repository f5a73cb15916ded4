"""The IsolationForest baseline: trained and calibrated like the autoencoder, scored through the same interface."""

from __future__ import annotations

import numpy as np

from stream_app.training.isolation import train_isolation
from stream_app.training.fit import TrainingConfig


def test_forest_is_calibrated_on_held_out_windows_and_scores_a_shift_higher() -> None:
    rng = np.random.default_rng(0)
    series = [rng.normal(0.0, 1.0, (600, 3)).astype(np.float32) for _ in range(2)]
    config = TrainingConfig(window=8, train_stride=2)
    bundle, scorer = train_isolation(series, ["a", "b", "c"], config, source="test", max_batch=64)

    assert bundle.card.detector == "isolation-forest"
    assert bundle.card.calibration["method"] == "quantile" and bundle.card.calibration["threshold"] > 1.0
    assert bundle.card.training.validation_windows == 2 * (120 - 8 + 1)
    normal = rng.normal(0.0, 1.0, (50, 8, 3)).astype(np.float32)
    shifted = normal + np.float32(6.0)  # every sensor far off: the forest (a weak baseline) must see it
    n, s = scorer.score(normal), scorer.score(shifted)
    assert n.feature_errors.shape == (50, 3)
    line = bundle.thresholds.threshold
    assert np.median(n.score) < line < np.median(s.score)
    # The forest cannot tell which sensor is off: every feature carries the window's score.
    assert np.array_equal(s.feature_errors[:, 0], s.score)
