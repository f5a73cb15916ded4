"""Threshold calibration on held-out normal windows.

Calibration and scoring share one definition of a window's score (see ``Thresholds``), so a
threshold calibrated here means the same thing in the worker and in evaluation.
"""

from __future__ import annotations

import numpy as np

from .model_store import Thresholds

DEFAULT_QUANTILE = 0.999
DEFAULT_MULTIPLIER = 1.25
# The level envelope is widened more than the score threshold: window means of slowly drifting
# machines are strongly autocorrelated, so one excursion lasts many windows.
ENVELOPE_MARGIN = 1.6


def calibrate(
    validation_errors: np.ndarray,
    features: list[str],
    *,
    window_means: np.ndarray | None = None,
    quantile: float = DEFAULT_QUANTILE,
    multiplier: float = DEFAULT_MULTIPLIER,
) -> Thresholds:
    """Thresholds from per-feature raw errors (n, F) of normal windows the model never trained on.

    ``window_means`` (n, F), the same windows' means in sensor units, gives the level envelope:
    the central ``quantile`` range, widened by ``ENVELOPE_MARGIN`` around its centre.
    """
    if validation_errors.ndim != 2 or len(validation_errors) < 10:
        raise ValueError("calibration needs at least 10 validation windows")
    if not 0.5 <= quantile < 1.0:
        raise ValueError("quantile must be in [0.5, 1)")
    reference = np.median(validation_errors, axis=0)
    reference = np.where(reference > 1e-9, reference, 1e-9)
    relative = validation_errors / reference
    per_feature = np.quantile(relative, quantile, axis=0) * multiplier
    return Thresholds(
        method="quantile",
        quantile=quantile,
        multiplier=multiplier,
        threshold=float(np.quantile(relative.max(axis=1), quantile) * multiplier),
        feature_reference=reference.astype(float).tolist(),
        feature_thresholds={name: float(v) for name, v in zip(features, per_feature)},
        feature_envelope=_envelope(window_means, features, quantile, ENVELOPE_MARGIN) if window_means is not None else {},
    )


def _envelope(
    window_means: np.ndarray, features: list[str], quantile: float, multiplier: float
) -> dict[str, tuple[float, float]]:
    low = np.quantile(window_means, 1 - quantile, axis=0)
    high = np.quantile(window_means, quantile, axis=0)
    centre, half = (low + high) / 2, (high - low) / 2 * multiplier
    return {f: (float(c - h), float(c + h)) for f, c, h in zip(features, centre, half)}


def severity(ratio: float) -> str:
    """From a window's distance to normal (1.0 = the alerting line): warning below 1.5, major below 3."""
    if ratio < 1.5:
        return "warning"
    return "major" if ratio < 3.0 else "critical"
