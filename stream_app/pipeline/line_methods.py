"""The threshold methods: where a window's score crosses the model's line, one class per method.

Each method calibrates its line on the relative errors of held-out normal windows (the ``Thresholds``
fields it owns) and applies it to a batch of scores, holding its own per-device state. A method is
found by its name in ``METHODS``, the name the model card stores (``Thresholds.method``). As in
river's ``anomaly.base`` / ``anomaly.filter``, the scorer and its threshold are separate objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, TypedDict

import numpy as np

from stream_app.models.store import Thresholds
from stream_app.pipeline.scorer import row_max

DEFAULT_EWMA_ALPHA = 0.2
# telemanom's search grid for z (its default sd_lim is 12).
Z_GRID = np.arange(2.5, 12.0, 0.5)


class LineFields(TypedDict):
    """The ``Thresholds`` fields a method's calibration sets."""

    threshold: float
    feature_thresholds: dict[str, float]
    ewma_alpha: float | None
    z: float | None


class LineMethod:
    """A threshold method: calibrate its line (``calibrate``), then measure batches against it (``ratio``).

    Every method records the window score's quantile x multiplier (``threshold``) and each feature's own
    line (``feature_thresholds``): a refit keeps both whatever the method, and a method may replace one.
    """

    name: ClassVar[str]

    def __init__(self, thresholds: Thresholds, features: Sequence[str]) -> None:
        self.threshold = thresholds.threshold

    @classmethod
    def calibrate(
        cls, relative: np.ndarray, features: Sequence[str], *, quantile: float, multiplier: float, ewma_alpha: float
    ) -> LineFields:
        """The line from normal windows' relative errors (n, F), in time order (1.0 = a feature's typical error)."""
        per_feature = np.quantile(relative, quantile, axis=0) * multiplier
        return LineFields(
            threshold=float(np.quantile(relative.max(axis=1), quantile) * multiplier),
            feature_thresholds={name: float(v) for name, v in zip(features, per_feature)},
            ewma_alpha=None,
            z=None,
        )

    def window_ratio(self, score: np.ndarray, feature_errors: np.ndarray) -> np.ndarray:
        """Each window's distance to the line on its own (1.0 = the line), no per-device state."""
        raise NotImplementedError

    def ratio(self, devices: Sequence[str], score: np.ndarray, feature_errors: np.ndarray) -> np.ndarray:
        """Each window's distance to the line (1.0 = the line); windows in reading order, ``devices[i]``'s."""
        return self.window_ratio(score, feature_errors)

    def forget(self, device: str) -> None:
        """Drop ``device``'s state (an idle device)."""

    def carry_over(self, old: LineMethod) -> None:
        """Take over the per-device state of the method this one replaces (another model version)."""


class Quantile(LineMethod):
    """The window score (its largest relative feature error) against its quantile x multiplier."""

    name = "quantile"

    def window_ratio(self, score: np.ndarray, feature_errors: np.ndarray) -> np.ndarray:
        return score / self.threshold


class PerFeature(LineMethod):
    """Each feature against its own line: any feature's relative error over its quantile x multiplier."""

    name = "per-feature"

    def __init__(self, thresholds: Thresholds, features: Sequence[str]) -> None:
        super().__init__(thresholds, features)
        self._lines = np.array([thresholds.feature_thresholds.get(f, self.threshold) for f in features], np.float32)

    def window_ratio(self, score: np.ndarray, feature_errors: np.ndarray) -> np.ndarray:
        return row_max(feature_errors / self._lines)


def ewma_step(level: float, x: float, alpha: float) -> float:
    """One step of the exponentially weighted moving average: alpha*x + (1-alpha)*level."""
    return alpha * x + (1.0 - alpha) * level


def ewma(values: np.ndarray, alpha: float, start: float | None = None) -> np.ndarray:
    """Causal exponentially weighted moving average: s[t] = alpha*x[t] + (1-alpha)*s[t-1], s[-1] = start or x[0]."""
    out = np.empty(len(values), np.float64)
    level = float(values[0]) if start is None and len(values) else float(start or 0.0)
    for i, x in enumerate(np.asarray(values, np.float64)):
        level = out[i] = ewma_step(level, x, alpha)
    return out


def telemanom_epsilon(smoothed: np.ndarray, z_grid: np.ndarray = Z_GRID) -> tuple[float, float]:
    """telemanom's unsupervised threshold (Hundman et al., KDD 2018): epsilon = mean + z*sd.

    For each z, the points at or above epsilon are pruned; z maximises
    (relative drop of the mean + relative drop of the sd) / (sequences^2 + pruned points), where
    sequences are runs of pruned points longer than one; at most 5 sequences and under half the
    points may be pruned. When no z prunes anything, z is the grid's end (its ``sd_lim``).
    Returns (epsilon, z).
    """
    e = np.asarray(smoothed, np.float64)
    mean, sd = float(e.mean()), float(e.std())
    best_z, best = float(z_grid[-1]) + 0.5, -np.inf
    if sd <= 0:
        return mean, best_z
    for z in z_grid:
        epsilon = mean + z * sd
        above = e >= epsilon
        n_above = int(above.sum())
        if n_above == 0 or n_above >= len(e) * 0.5:
            continue
        pruned = e[~above]
        starts = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
        ends = np.flatnonzero(above & ~np.concatenate([above[1:], [False]]))
        sequences = int(np.sum(ends > starts))
        if sequences > 5:
            continue
        score = ((mean - pruned.mean()) / mean + (sd - pruned.std()) / sd) / (sequences**2 + n_above)
        if score >= best:
            best, best_z = score, float(z)
    return mean + best_z * sd, best_z


class Dynamic(Quantile):
    """telemanom's dynamic threshold: each device's EWMA-smoothed score against mean + z*sd of the smoothed
    normal scores (z by the pruned-anomaly criterion), x multiplier."""

    name = "dynamic"

    def __init__(self, thresholds: Thresholds, features: Sequence[str]) -> None:
        super().__init__(thresholds, features)
        self.alpha = thresholds.ewma_alpha or 1.0
        self.smoothed: dict[str, float] = {}  # each device's EWMA of its window scores

    @classmethod
    def calibrate(
        cls, relative: np.ndarray, features: Sequence[str], *, quantile: float, multiplier: float, ewma_alpha: float
    ) -> LineFields:
        fields = super().calibrate(relative, features, quantile=quantile, multiplier=multiplier, ewma_alpha=ewma_alpha)
        epsilon, z = telemanom_epsilon(ewma(relative.max(axis=1), ewma_alpha))
        return LineFields(threshold=epsilon * multiplier, feature_thresholds=fields["feature_thresholds"], ewma_alpha=ewma_alpha, z=z)

    def ratio(self, devices: Sequence[str], score: np.ndarray, feature_errors: np.ndarray) -> np.ndarray:
        smoothed = np.empty(len(devices), np.float32)
        state, alpha = self.smoothed, self.alpha
        # In reading order, so each device's EWMA stays causal (tolist: Python floats, ~100 ns a window
        # less than indexing numpy scalars, which pays for the step's call).
        for i, (device, x) in enumerate(zip(devices, score.tolist())):
            previous = state.get(device)
            state[device] = smoothed[i] = x if previous is None else ewma_step(previous, x, alpha)
        return smoothed / self.threshold

    def forget(self, device: str) -> None:
        self.smoothed.pop(device, None)

    def carry_over(self, old: LineMethod) -> None:
        if isinstance(old, Dynamic):
            self.smoothed = old.smoothed  # scores are relative to "typical" (1.0) for every model


METHODS: dict[str, type[LineMethod]] = {m.name: m for m in (Quantile, PerFeature, Dynamic)}


def line_method(name: str) -> type[LineMethod]:
    """The threshold method called ``name``; a ValueError naming the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown threshold method {name!r}; known: {', '.join(METHODS)}") from None
