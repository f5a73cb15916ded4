"""A model card's drift reference, computed at training: quantile bins of each feature and of the
validation windows' distance to the line, which the worker's drift watch compares live readings against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stream_app.models.store import DriftReference


def bin_index(edges: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bin index of each value over interior ``edges``: len(edges) + 1 bins, open at both ends."""
    return np.searchsorted(np.asarray(edges), values, side="right")


def reference_from(
    train_values: np.ndarray, features: list[str], val_ratios: np.ndarray, over_line: float, *, bins: int = 10
) -> DriftReference:
    """A card's drift reference: training quantile bins per feature, validation distance-to-line bins."""

    def interior(values: np.ndarray) -> list[float]:
        edges = np.unique(np.quantile(values[np.isfinite(values)], np.linspace(0, 1, bins + 1)[1:-1]))
        return [float(e) for e in edges]

    def shares(edges: list[float], values: np.ndarray) -> list[float]:
        counts = np.bincount(bin_index(edges, values), minlength=len(edges) + 1)
        return [float(c) for c in counts / max(1, counts.sum())]

    feature_edges = {f: interior(train_values[:, j]) for j, f in enumerate(features)}
    ratio_edges = interior(val_ratios)
    return DriftReference(
        bins=bins,
        feature_edges=feature_edges,
        feature_shares={f: shares(feature_edges[f], train_values[:, j]) for j, f in enumerate(features)},
        ratio_edges=ratio_edges,
        ratio_shares=shares(ratio_edges, val_ratios),
        windows_over_line=float(over_line),
    )
