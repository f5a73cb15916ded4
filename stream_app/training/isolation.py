"""A baseline detector: scikit-learn's IsolationForest on summary features of each window.

It plugs into the same ``Detector`` as the LSTM autoencoder (same windows, checks, thresholds and
episodes): it exposes ``score()`` and ``max_batch`` like ``Scorer``. A window becomes, per sensor
(scaled with the training scaler), its mean, standard deviation, minimum and maximum; the forest's
anomaly score becomes ``c / h``, the average path length of a point over this window's expected path
length (how many times faster it is isolated), and that divided by its median on normal validation
windows is the window's score, so 1.0 means "typical" as it does for the autoencoder. (The forest's
own score ``s = 2^(-h/c)`` saturates near 1.5x its normal median, below a quantile x multiplier line:
the baseline could never alert on it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stream_app.models.store import ModelBundle, ModelCard, Scaler
from stream_app.pipeline.scorer import Scores
from stream_app.training.fit import TrainingConfig, TrainingData, calibration_record, validation_metrics

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest


def window_features(scaled: np.ndarray) -> np.ndarray:
    """(n, T, F) scaled windows -> (n, 4F): mean, std, min, max per sensor."""
    return np.concatenate([scaled.mean(axis=1), scaled.std(axis=1), scaled.min(axis=1), scaled.max(axis=1)], axis=1)


class IsolationScorer:
    def __init__(self, forest: IsolationForest, scaler: Scaler, n_features: int, *, reference: float = 1.0, max_batch: int = 1024):
        self.forest = forest
        self.scaler = scaler
        self.n_features = n_features
        self.reference = reference
        self.max_batch = max_batch

    def raw_scores(self, windows: np.ndarray) -> np.ndarray:
        if not len(windows):
            return np.empty(0, np.float32)
        s = -self.forest.score_samples(window_features(self.scaler.transform(windows)))
        return (-1.0 / np.log2(s)).astype(np.float32)  # s = 2^(-h/c) -> c/h

    def score(self, windows: np.ndarray) -> Scores:
        score = self.raw_scores(windows) / self.reference
        # The forest cannot say which sensor is off: every feature carries the window's score.
        return Scores(feature_errors=np.repeat(score[:, None], self.n_features, axis=1), score=score)


def train_isolation(
    series: list[np.ndarray],
    features: list[str],
    config: TrainingConfig = TrainingConfig(),
    *,
    source: str,
    max_batch: int = 1024,
) -> tuple[ModelBundle, IsolationScorer]:
    """Fit a forest on the training part of each series, calibrate on the held-out part; in memory."""
    from sklearn.ensemble import IsolationForest

    data = TrainingData.prepare(series, config)
    scaler, x_train, x_val = data.scaler, data.x_train, data.x_val
    forest = IsolationForest(n_estimators=100, random_state=config.seed).fit(window_features(scaler.transform(x_train)))
    scorer = IsolationScorer(forest, scaler, len(features), max_batch=max_batch)
    raw = scorer.raw_scores(x_val).astype(np.float64)
    thresholds = data.calibrate(np.repeat(raw[:, None], len(features), axis=1), features, config)
    scorer.reference = float(thresholds.feature_reference[0])
    val_scores = raw / scorer.reference
    card = ModelCard(
        version="iforest",
        detector="isolation-forest",
        features=features,
        window=config.window,
        units=0,
        training=data.summary(features, source=source, epochs=0),
        validation=validation_metrics(val_scores, thresholds),
        notes={"window_features": "mean,std,min,max of each scaled sensor", "n_estimators": 100},
        calibration=calibration_record(thresholds),
    )
    bundle = ModelBundle(path=Path("."), card=card, scaler=scaler, thresholds=thresholds)
    return bundle, scorer
