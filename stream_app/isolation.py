"""A baseline detector: scikit-learn's IsolationForest on summary features of each window.

It plugs into the same ``Detector`` as the LSTM autoencoder (same windows, checks, thresholds and
episodes): it exposes ``score()`` and ``max_batch`` like ``Scorer``. A window becomes, per sensor
(scaled with the training scaler), its mean, standard deviation, minimum and maximum; the forest's
anomaly score (``-score_samples``) divided by its median on normal validation windows is the
window's score, so 1.0 means "typical" as it does for the autoencoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .model_store import ModelBundle, ModelCard, Scaler, TrainingSummary, ValidationMetrics
from .scorer import Scores
from .thresholds import calibrate
from .training import TrainingConfig, _split, windows_of


def window_features(scaled: np.ndarray) -> np.ndarray:
    """(n, T, F) scaled windows -> (n, 4F): mean, std, min, max per sensor."""
    return np.concatenate([scaled.mean(axis=1), scaled.std(axis=1), scaled.min(axis=1), scaled.max(axis=1)], axis=1)


class IsolationScorer:
    def __init__(self, forest: object, scaler: Scaler, n_features: int, *, reference: float = 1.0, max_batch: int = 1024):
        self.forest = forest
        self.scaler = scaler
        self.n_features = n_features
        self.reference = reference
        self.max_batch = max_batch

    def raw_scores(self, windows: np.ndarray) -> np.ndarray:
        if not len(windows):
            return np.empty(0, np.float32)
        return (-self.forest.score_samples(window_features(self.scaler.transform(windows)))).astype(np.float32)  # type: ignore[attr-defined]

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

    train_parts, val_parts = _split(series, config)
    train_values = np.concatenate(train_parts)
    scaler = Scaler.fit(train_values)
    x_train = np.concatenate([windows_of(s, config.window, config.train_stride) for s in train_parts])
    x_val = np.concatenate([windows_of(s, config.window, 1) for s in val_parts])
    if len(x_train) < 10 or len(x_val) < 10:
        raise ValueError(f"not enough data: {len(x_train)} training and {len(x_val)} validation windows")
    forest = IsolationForest(n_estimators=100, random_state=config.seed).fit(window_features(scaler.transform(x_train)))
    scorer = IsolationScorer(forest, scaler, len(features), max_batch=max_batch)
    raw = scorer.raw_scores(x_val).astype(np.float64)
    thresholds = calibrate(
        np.repeat(raw[:, None], len(features), axis=1),
        features,
        window_means=x_val.mean(axis=1),
        window_ranges=np.concatenate([np.ptp(x_train, axis=1), np.ptp(x_val, axis=1)]),
        quantile=config.quantile,
        multiplier=config.multiplier,
        method=config.threshold_method,
        ewma_alpha=config.ewma_alpha,
    )
    scorer.reference = float(thresholds.feature_reference[0])
    val_scores = raw / scorer.reference
    card = ModelCard(
        version="iforest",
        detector="isolation-forest",
        features=features,
        window=config.window,
        units=0,
        training=TrainingSummary(
            source=source,
            series=len(series),
            readings=int(sum(len(s) for s in series)),
            train_windows=len(x_train),
            validation_windows=len(x_val),
            feature_mean=dict(zip(features, train_values.mean(axis=0).astype(float).tolist())),
            feature_std=dict(zip(features, train_values.std(axis=0).astype(float).tolist())),
            epochs=0,
        ),
        validation=ValidationMetrics(
            train_loss=0.0,
            validation_loss=0.0,
            validation_score_p50=float(np.median(val_scores)),
            validation_score_p99=float(np.quantile(val_scores, 0.99)),
            validation_score_max=float(val_scores.max()),
            validation_windows_over_threshold=float((val_scores > thresholds.threshold).mean()),
        ),
        notes={"window_features": "mean,std,min,max of each scaled sensor", "n_estimators": 100},
    )
    bundle = ModelBundle(path=Path("."), card=card, scaler=scaler, thresholds=thresholds)
    return bundle, scorer
