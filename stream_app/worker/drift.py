"""Drift watch: do today's readings still look like the training data?

For each asset group's model, against the ``drift_reference`` on its card (recorded at training):

* ``psi`` and ``ks`` per feature: the population stability index and the Kolmogorov-Smirnov
  statistic of recent readings against the training readings, over the training quantile bins;
* ``score_psi``: the same PSI for windows' distance to the line against normal validation windows;
* ``over_line_ratio``: the share of windows over the line against the share calibration predicted
  (``windows_over_line``, floored at 0.1%: a calibrated share of zero would make any window infinite);
* ``alerts_per_device_day``: episodes opened per device-day over a longer horizon.

Cheap on the hot path: one reading in ``sample_every`` (and one window in as many) is binned with a
vectorised ``searchsorted`` into per-minute buckets keyed by reading time; figures are computed when
reading time enters a new minute, over the last ``window_s`` (PSI, KS, scores) or ``rate_window_s``
(alert rate). Reading time, not wall time, so a replay or a simulation at any speed is judged alike.

A figure that crosses its limit gives one model-health event naming group, feature, figure and
limit; it re-arms once the figure falls below 80% of the limit.
"""

from __future__ import annotations

import logging
import operator
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from stream_app.contracts import Reading
from stream_app.pipeline.columns import ReadingColumns
from stream_app.worker.health import HealthEvent
from stream_app.models.store import DriftReference
from stream_app.training.reference import bin_index, reference_from

if TYPE_CHECKING:  # training imports this module for the reference; the worker's types stay out of its way
    from stream_app.pipeline.group_detector import Detections, GroupDetector

log = logging.getLogger(__name__)

_EPS = 1e-4  # floor of a bin's share in PSI: an empty bin is rare, not impossible
_MIN_OVER_LINE = 0.001
_REARM = 0.8


def psi(observed: np.ndarray, expected: np.ndarray) -> float:
    o = np.maximum(observed / max(1.0, observed.sum()), _EPS)
    e = np.maximum(np.asarray(expected, np.float64), _EPS)
    return float(np.sum((o - e) * np.log(o / e)))


def ks(observed: np.ndarray, expected: np.ndarray) -> float:
    o = np.cumsum(observed / max(1.0, observed.sum()))
    return float(np.max(np.abs(o - np.cumsum(expected))))


@dataclass(frozen=True, slots=True)
class DriftLimits:
    psi: float = 0.25
    ks: float = 0.2
    score_psi: float = 0.25
    over_line_ratio: float = 20.0
    alerts_per_device_day: float = 2.0
    window_s: float = 300.0
    rate_window_s: float = 86_400.0
    sample_every: int = 10
    min_samples: int = 200
    min_device_days: float = 1.0


@dataclass
class _Bucket:
    minute: int
    features: npt.NDArray[np.int64]  # (F, bins) counts
    ratios: npt.NDArray[np.int64]
    samples: int = 0
    windows: int = 0
    over_line: int = 0
    opened: int = 0
    devices: set[str] = field(default_factory=set)


class DriftWatch:
    """One model's drift watch; ``observe`` each batch's readings and windows, get back events."""

    def __init__(self, group: str, model_version: str, features: list[str], reference: DriftReference,
                 limits: DriftLimits = DriftLimits(), *, wandering: Iterable[str] = ()) -> None:  # fmt: skip
        self.group = group
        self.model_version = model_version
        self.features = features
        # Sensors the model reads for their shape (their level wanders: ``Scaler.centred``): their readings
        # leave the training's range by nature, so their own PSI and KS say nothing; the scores still do.
        self.wandering = frozenset(wandering)
        self.reference = reference
        self.limits = limits
        self._edges = [np.asarray(reference.feature_edges[f]) for f in features]
        self._expected = [np.asarray(reference.feature_shares[f]) for f in features]
        self._nbins = [len(e) + 1 for e in self._edges]
        self._width = max(self._nbins)
        self._ratio_edges = np.asarray(reference.ratio_edges)
        self._buckets: deque[_Bucket] = deque()
        self._above: set[str] = set()
        self._rng = np.random.default_rng(0)
        self.figures: dict[str, dict[str, object]] = {}

    def _bucket(self, minute: int) -> _Bucket | None:
        if self._buckets and minute < self._buckets[0].minute:
            return None  # older than what is kept
        for b in reversed(self._buckets):
            if b.minute == minute:
                return b
            if b.minute < minute:
                break
        bucket = _Bucket(minute, np.zeros((len(self.features), self._width), np.int64), np.zeros(len(self._ratio_edges) + 1, np.int64))
        self._buckets.append(bucket)
        if len(self._buckets) > 1 and self._buckets[-2].minute > minute:  # a late minute: keep them sorted
            self._buckets = deque(sorted(self._buckets, key=lambda b: b.minute))
        return bucket

    def observe(self, values: np.ndarray, ts_ms: np.ndarray, *, ratios: np.ndarray | None = None, opened: int = 0,
                devices: Iterable[str] = (), newest_ms: int | None = None, sampled: bool = False) -> list[HealthEvent]:  # fmt: skip
        """Readings (n, F) in model feature order with their times (``sampled``: already a sample);
        the batch's window ratios and episodes opened. Returns the events of every minute that closed."""
        if len(ts_ms) == 0 and newest_ms is None:
            return []
        newest_before = self._buckets[-1].minute if self._buckets else None
        step = self.limits.sample_every
        if sampled:
            vals, times = values, np.asarray(ts_ms)
        else:
            # A random sample, not every k-th: batches arrive in device order, and a stride would
            # pick the same few devices every time.
            pick = self._rng.random(len(ts_ms)) < 1.0 / step
            vals, times = values[pick], np.asarray(ts_ms)[pick]
        last_minute = int(max(np.max(ts_ms) if len(ts_ms) else 0, newest_ms or 0) // 60_000)
        for minute in np.unique(times // 60_000) if len(times) else ():
            bucket = self._bucket(int(minute))
            if bucket is None:
                continue
            rows = vals[times // 60_000 == minute]
            for j, edges in enumerate(self._edges):
                bucket.features[j, : self._nbins[j]] += np.bincount(bin_index(edges, rows[:, j]), minlength=self._nbins[j])
            bucket.samples += len(rows)
        current = self._bucket(last_minute)
        if current is not None:
            current.opened += opened
            current.devices.update(devices)
            if ratios is not None and len(ratios):
                r = np.asarray(ratios)[self._rng.random(len(ratios)) < 1.0 / step]
                current.ratios += np.bincount(bin_index(self._ratio_edges, r), minlength=len(self._ratio_edges) + 1)
                current.windows += len(ratios)
                current.over_line += int((np.asarray(ratios) > 1.0).sum())
        newest = self._buckets[-1].minute if self._buckets else last_minute
        horizon = newest - int(self.limits.rate_window_s // 60)
        while self._buckets and self._buckets[0].minute <= horizon:
            self._buckets.popleft()
        if newest_before is not None and newest > newest_before:
            return self.evaluate(closed_minute=newest - 1)
        return []

    def evaluate(self, closed_minute: int | None = None) -> list[HealthEvent]:
        """Figures over the recent buckets (up to ``closed_minute``); events for new crossings."""
        if not self._buckets:
            return []
        end = self._buckets[-1].minute if closed_minute is None else closed_minute
        recent_from = end - int(self.limits.window_s // 60) + 1
        recent = [b for b in self._buckets if recent_from <= b.minute <= end]
        allb = [b for b in self._buckets if b.minute <= end]
        at_ms = (end + 1) * 60_000
        figures: dict[str, tuple[float, float, str | None]] = {}
        samples = sum(b.samples for b in recent)
        if samples >= self.limits.min_samples:
            counts = np.sum([b.features for b in recent], axis=0)
            for j, f in enumerate(self.features):
                if f in self.wandering:
                    continue
                observed = counts[j, : self._nbins[j]].astype(np.float64)
                figures[f"psi:{f}"] = (psi(observed, self._expected[j]), self.limits.psi, f)
                figures[f"ks:{f}"] = (ks(observed, self._expected[j]), self.limits.ks, f)
        windows = sum(b.windows for b in recent)
        if windows * 1.0 / self.limits.sample_every >= self.limits.min_samples:
            ratio_counts = np.sum([b.ratios for b in recent], axis=0).astype(np.float64)
            figures["score_psi"] = (psi(ratio_counts, np.asarray(self.reference.ratio_shares)), self.limits.score_psi, None)
            share = sum(b.over_line for b in recent) / windows
            expected = max(self.reference.windows_over_line, _MIN_OVER_LINE)
            figures["over_line_ratio"] = (share / expected, self.limits.over_line_ratio, None)
        device_days = sum(len(b.devices) for b in allb) * 60.0 / 86_400.0
        if device_days >= self.limits.min_device_days:
            figures["alerts_per_device_day"] = (sum(b.opened for b in allb) / device_days, self.limits.alerts_per_device_day, None)
        events = []
        self.figures = {}
        for key, (value, limit, feature) in figures.items():
            figure = key.split(":", 1)[0]
            self.figures[key] = {"value": round(value, 4), "limit": limit, "at_ms": at_ms, "model_version": self.model_version}
            if value > limit and key not in self._above:
                self._above.add(key)
                where = f"feature {feature}" if feature else "scores"
                events.append(HealthEvent.make(
                    "drift", self.group, self.model_version,
                    f"drift in group {self.group} (model {self.model_version}): {figure} of {where} is {value:.3f}, over its limit {limit}",
                    at_ms=at_ms, feature=feature, figure=figure, value=value, limit=limit,
                ))  # fmt: skip
            elif value < _REARM * limit and key in self._above:
                self._above.discard(key)
        return events


@dataclass
class DriftResult:
    events: list[HealthEvent] = field(default_factory=list)
    evaluated: list[DriftWatch] = field(default_factory=list)


class FleetDrift:
    """A DriftWatch per asset group, following the model each group's detector serves (a hot reload
    starts a fresh watch against the new model's reference)."""

    def __init__(self, detector: GroupDetector, limits: DriftLimits = DriftLimits(), *, seed: int = 0) -> None:
        self.detector = detector
        self.limits = limits
        self.watches: dict[str, DriftWatch | None] = {}
        self._getters: dict[str, operator.itemgetter] = {}
        self._seen: set[tuple[str, str]] = set()
        self._rng = np.random.default_rng(seed)

    def _watch(self, group: str) -> DriftWatch | None:
        serving = self.detector.detectors.get(group)
        if serving is None:  # a group still learning its first model (cold start): nothing to drift from
            return None
        key = (group, serving.model_version)
        if key in self._seen:
            return self.watches.get(group)
        self._seen.add(key)
        reference = serving.bundle.card.drift_reference
        if reference is None or any(f not in reference.feature_edges for f in serving.features):
            log.warning(
                "drift watch off for model %s (group %s): its card has no drift reference (trained before the "
                "drift watch); train a new version to turn it on", serving.model_version, group,
            )  # fmt: skip
            self.watches[group] = None
            return None
        wandering = [f for f, c in zip(serving.features, serving.bundle.scaler.centre_mask()) if c]
        self.watches[group] = watch = DriftWatch(
            group, serving.model_version, serving.features, reference, self.limits, wandering=wandering
        )
        self._getters[group] = operator.itemgetter(*serving.features)
        return watch

    def observe(self, readings: Sequence[Reading], detections: Detections) -> DriftResult:
        """Sample the batch and bin it per group; the events, and the watches that evaluated."""
        out = DriftResult()
        if not readings:
            return out
        picked = np.flatnonzero(self._rng.random(len(readings)) < 1.0 / self.limits.sample_every)
        group_of = self.detector.router.group_of
        # The worker's batch is columns: its fields are read in place, not as a Reading made for each sample.
        columns = ReadingColumns.of(readings)
        device_ids, stamps, dicts = columns.device_ids, columns.ts, columns.values
        per_group: dict[str, tuple[list, list]] = {}
        for i in picked.tolist():
            rows, times = per_group.setdefault(group_of(device_ids[i]), ([], []))
            rows.append(dicts[i])
            times.append(stamps[i])
        newest = max(stamps[0], stamps[-1])
        by_version = {d.model_version: g for g, d in self.detector.detectors.items()}
        groups = set(per_group) | {by_version[v] for v in detections.by_model if v in by_version}
        for group in groups:
            watch = self._watch(group)
            if watch is None:
                continue
            get = self._getters[group]
            rows, times = per_group.get(group, ([], []))
            values, kept = [], []
            for row, ts in zip(rows, times):
                try:
                    values.append(get(row))
                    kept.append(ts)
                except KeyError:  # refused by the detector, not judged here
                    continue
            detection = detections.by_model.get(watch.model_version)
            before = watch.figures
            out.events += watch.observe(
                np.array(values, np.float32).reshape(len(values), len(watch.features)), np.asarray(kept, np.int64),
                ratios=None if detection is None else detection.window_ratio,
                opened=0 if detection is None else sum(1 for a in detection.alerts if a.episode.state == "open"),
                devices=() if detection is None else detection.statuses.keys(), newest_ms=newest, sampled=True,
            )  # fmt: skip
            if watch.figures is not before:
                out.evaluated.append(watch)
        return out
