"""The normal windows a group's model may be refitted on, and a refit's outcome.

The pipeline keeps the reservoir (windows outside episodes and under the line); ``training.refit``
trains the candidates and ``detector.record_refit`` installs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_app.models.store import ModelBundle
from stream_app.pipeline.scorer import Scorer


@dataclass(frozen=True, slots=True)
class RefitConfig:
    enabled: bool = True
    capacity: int = 4096  # windows kept
    min_windows: int = 1024  # in the reservoir before a refit is trusted
    every_windows: int = 2048  # new normal windows between refits
    min_interval_s: float = 3600.0  # stream time between refits
    epochs: int = 6
    holdout: float = 0.25  # newest share of the reservoir: the comparison and calibration windows
    tolerance: float = 1.02  # the candidate's median held-out score may be at most this x the serving model's
    # How long a refit remembers how far an earlier one widened the lines (stream time; training.refit.bounded_lines).
    memory_half_life_s: float = 7 * 86400.0


class NormalReservoir:
    """The most recent plainly normal windows of one asset group, in arrival order."""

    def __init__(self, window: int, n_features: int, config: RefitConfig) -> None:
        self.config = config
        self._windows = np.zeros((config.capacity, window, n_features), np.float32)
        self._count = 0  # windows ever added
        self._since_fit = 0
        self._last_fit_ms: int | None = None

    def __len__(self) -> int:
        return min(self._count, self.config.capacity)

    def add(self, window: np.ndarray) -> None:
        self._windows[self._count % self.config.capacity] = window
        self._count += 1
        self._since_fit += 1

    def add_many(self, windows: np.ndarray, rows: np.ndarray) -> None:
        """``add`` each of ``windows[rows]`` in order: only the newest ``capacity`` of them are kept, so only
        those are copied, straight into their places (at most two runs of the ring)."""
        cap, k = self.config.capacity, len(rows)
        rows = rows[max(0, k - cap) :]
        start = (self._count + k - len(rows)) % cap
        first = min(len(rows), cap - start)
        np.take(windows, rows[:first], axis=0, out=self._windows[start : start + first])
        np.take(windows, rows[first:], axis=0, out=self._windows[: len(rows) - first])
        self._count += k
        self._since_fit += k

    def due(self, now_ms: int) -> bool:
        cfg = self.config
        if not cfg.enabled or len(self) < cfg.min_windows or self._since_fit < cfg.every_windows:
            return False
        if self._last_fit_ms is None:
            self._last_fit_ms = now_ms  # the clock starts with the first full reservoir
        return now_ms - self._last_fit_ms >= cfg.min_interval_s * 1000

    def fitted(self, now_ms: int) -> None:
        """A refit was tried at ``now_ms`` (kept or not): wait for new data and time before the next."""
        self._since_fit = 0
        self._last_fit_ms = now_ms

    def windows(self) -> np.ndarray:
        """The kept windows, oldest first (a copy)."""
        n, cap = len(self), self.config.capacity
        if self._count <= cap:
            return self._windows[:n].copy()
        start = self._count % cap
        return np.concatenate([self._windows[start:], self._windows[:start]])


@dataclass(frozen=True, slots=True)
class RefitResult:
    bundle: ModelBundle | None  # None: the candidate was discarded
    scorer: Scorer | None
    serving_median: float
    candidate_median: float
    fresh_scaler: bool
    seconds: float
