"""The detector: readings in, alerts out. The worker and ``floorwatch evaluate`` both run this.

For each micro-batch of decoded readings it goes window -> batch -> score -> threshold ->
episode, causally, reading by reading: a window is scored as soon as its last reading arrives,
with nothing from later readings.
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .contracts import Alert, Episode, Reading, iso_ms
from .episodes import EpisodeRule, EpisodeTracker, OpenEpisode, Transition
from .model_store import ModelBundle
from .rules import Rule
from .scorer import Scorer, Scores, row_max
from .thresholds import severity
from .windows import Push, WindowStore


@dataclass(slots=True)
class DeviceStatus:
    """The latest known state of one device, as written to its Redis hash."""

    device_id: str
    last_reading_ms: int
    state: Literal["normal", "anomalous"] = "normal"
    last_score: float | None = None


@dataclass(slots=True)
class Refused:
    """A decoded reading the detector could not use, and why."""

    reading: Reading
    reason: str


@dataclass(slots=True)
class Detection:
    alerts: list[Alert] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    statuses: dict[str, DeviceStatus] = field(default_factory=dict)
    scored: int = 0
    duplicates: int = 0
    # Per scored window, in order (for evaluation): device and window end ms.
    window_devices: list[str] = field(default_factory=list)
    window_end_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    # The window's distance to normal (1.0 = the line), and whether its device's episode is open after it.
    window_ratio: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    window_open: np.ndarray = field(default_factory=lambda: np.empty(0, bool))


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    stride: int = 1
    max_gap_ms: int = 60_000
    max_future_ms: int = 300_000
    rule: EpisodeRule = EpisodeRule()
    rules: tuple[Rule, ...] = ()  # operator bounds, checked on each reading beside the model


class Detector:
    def __init__(self, bundle: ModelBundle, scorer: Scorer, config: DetectorConfig = DetectorConfig()) -> None:
        self.bundle = bundle
        self.scorer = scorer
        self.config = config
        self.features = bundle.card.features
        self.threshold = bundle.thresholds.threshold
        envelope = bundle.thresholds.feature_envelope
        bounds = np.array([envelope.get(f, (-np.inf, np.inf)) for f in self.features], np.float64)
        finite = np.isfinite(bounds).all(axis=1)
        with np.errstate(invalid="ignore"):  # (-inf + inf) / 2 for features without an envelope, masked below
            self._centre = np.where(finite, bounds.mean(axis=1), 0.0).astype(np.float32)
        self._half = np.where(finite, (bounds[:, 1] - bounds[:, 0]) / 2, np.inf).astype(
            np.float32
        )
        thresholds = bundle.thresholds
        stuck = thresholds.stuck_features
        self._stuck_mask = np.array([stuck is None or f in stuck for f in self.features], bool)
        self._stuck_run = min(thresholds.stuck_run or bundle.card.window, bundle.card.window)
        self._method = thresholds.method
        # Per-feature method: each feature's relative error against its own line.
        self._feature_lines = np.array(
            [thresholds.feature_thresholds.get(f, self.threshold) for f in self.features], np.float32
        )
        self._alpha = thresholds.ewma_alpha or 1.0
        self._smoothed: dict[str, float] = {}  # dynamic method: each device's EWMA of its window scores
        unknown = [r.name for r in config.rules if r.feature not in self.features]
        if unknown:
            known = ", ".join(self.features)
            raise ValueError(f"{', '.join(unknown)}: no such feature in model {bundle.version} (features: {known})")
        self._rule_columns = [self.features.index(r.feature) for r in config.rules]
        # A reading's model features in model order, in one C call (a lone feature gives a scalar, reshaped later).
        self._get_features = operator.itemgetter(*self.features)
        self.windows = WindowStore(bundle.card.window, len(self.features), max_gap_ms=config.max_gap_ms)
        self.episodes = EpisodeTracker(config.rule)
        # Staging area for one micro-batch of windows; grown on demand.
        self._batch = np.zeros((scorer.max_batch, bundle.card.window, len(self.features)), np.float32)

    @property
    def model_version(self) -> str:
        return self.bundle.version

    def unseen(self, device_ids: Iterable[str]) -> list[str]:
        """Devices this detector has no reading of yet (a new device, or one taken over from another worker)."""
        return [d for d in device_ids if d not in self.windows]

    def resume(self, device_id: str, episode: OpenEpisode) -> None:
        """Carry on with an episode the device's previous worker had open (see ``EpisodeTracker.resume``)."""
        self.episodes.resume(device_id, episode)

    def carry_over_from(self, old: Detector) -> bool:
        """Take over the per-device state of the detector this one replaces (a hot reload, reload.py).

        Open episodes (and their runs of windows over the line) always carry over: they describe
        the device, not the model, so a failure that spans a swap stays one episode. Windows and the
        dynamic method's smoothed scores carry over when the window length and features (names and
        order) match; then no reading goes unscored. Otherwise each device's window refills from
        its next readings (T - 1 readings unscored per device) and False is returned.
        """
        self.episodes = old.episodes
        same_shape = old.features == self.features and old.windows.length == self.windows.length
        if same_shape:
            self.windows = old.windows
            self._smoothed = old._smoothed  # scores are relative to "typical" (1.0) for every model
        return same_shape

    def process(self, readings: Sequence[Reading], *, now_ms: int | None = None) -> Detection:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        out = Detection()
        readings, values = self._values_of(readings, out)
        devices: list[str] = []
        spans: list[tuple[int, int]] = []
        fresh: list[int] = []  # per window: how many of its last readings no earlier window was scored with
        length, stride = self.windows.length, self.config.stride
        for reading, row in zip(readings, values):
            try:
                slot = self._push(reading, row, now_ms, out)
            except Exception as exc:  # one odd reading must not sink the whole batch
                out.refused.append(Refused(reading, f"could not be windowed: {type(exc).__name__}: {exc}"))
                continue
            if slot is None:
                continue
            filled = self.windows.filled(slot)
            if filled < length or (filled - length) % stride:
                continue
            k = len(devices)
            if k == len(self._batch):
                self._batch = np.concatenate([self._batch, np.zeros_like(self._batch)])
            self._batch[k] = self.windows.window(slot)
            devices.append(reading.device_id)
            spans.append(self.windows.window_span(slot))
            fresh.append(filled if filled == length else min(stride, length))
        if devices:
            self._score(devices, spans, fresh, out)
        return out

    def _values_of(self, readings: Sequence[Reading], out: Detection) -> tuple[Sequence[Reading], np.ndarray]:
        """The model's features of each reading as one (n, F) array; readings lacking one are refused."""
        get = self._get_features
        try:
            rows = [get(r.values) for r in readings]
        except KeyError:  # rare: sort the usable from the refused one by one
            kept: list[Reading] = []
            rows = []
            for reading in readings:
                try:
                    rows.append(get(reading.values))
                except KeyError:
                    missing = [f for f in self.features if f not in reading.values]
                    out.refused.append(Refused(reading, f"missing sensor(s) {', '.join(missing)} required by the model"))
                    continue
                kept.append(reading)
            readings = kept
        return readings, np.array(rows, np.float32).reshape(len(rows), len(self.features))

    def _push(self, reading: Reading, values: np.ndarray, now_ms: int, out: Detection) -> int | None:
        if reading.ts > now_ms + self.config.max_future_ms:
            out.refused.append(Refused(reading, f"timestamp {iso_ms(reading.ts)} is in the future"))
            return None
        slot = self.windows.push(reading.device_id, reading.ts, values)
        if slot == Push.DUPLICATE:
            out.duplicates += 1
            return None
        if slot == Push.OUT_OF_ORDER:
            out.refused.append(Refused(reading, "out of order: older than the device's last reading"))
            return None
        status = out.statuses.get(reading.device_id)
        if status is None:
            out.statuses[reading.device_id] = DeviceStatus(
                reading.device_id, reading.ts, "anomalous" if self.episodes.is_open(reading.device_id) else "normal"
            )
        else:
            status.last_reading_ms = reading.ts
        return slot

    def _score(self, devices: list[str], spans: list[tuple[int, int]], fresh: list[int], out: Detection) -> None:
        windows = self._batch[: len(devices)]
        scores = self.scorer.score(windows)
        # Checks beside the model: a sensor repeating one value for its last readings is stuck, and
        # a window whose mean leaves the normal envelope is out of range, whatever the model says.
        # (Reductions over the short window and feature axes are written as a few whole-array ops:
        # numpy's own, e.g. np.ptp(axis=1), cost ~1 us a window, a tenth of the detector's time.)
        last = windows[:, -1]
        same = (windows[:, t] == last for t in range(-self._stuck_run, -1))
        stuck = functools.reduce(np.logical_and, same, np.broadcast_to(self._stuck_mask, last.shape))
        level = np.abs(np.einsum("ntf->nf", windows) / windows.shape[1] - self._centre) / self._half  # 1.0 = edge of the envelope
        out_of_range = level > 1.0
        ratio = np.maximum(self._model_ratio(devices, scores), row_max(level))
        broken = self._broken_rules(windows, fresh)
        ratio[_row_any(stuck) | _row_any(broken)] = np.inf
        is_open = np.zeros(len(devices), bool)
        for i, device in enumerate(devices):
            score = float(scores.score[i])
            transition = self.episodes.update(device, spans[i][1], float(ratio[i]))
            status = out.statuses[device]
            status.last_score = score
            is_open[i] = self.episodes.is_open(device)
            status.state = "anomalous" if is_open[i] else "normal"
            if transition is not None:
                # (check, feature); the first names the alert's top feature.
                checks = [(self.config.rules[k].name, self.config.rules[k].feature) for k in np.flatnonzero(broken[i])]
                checks += [(f"stuck:{self.features[j]}", self.features[j]) for j in np.flatnonzero(stuck[i])]
                checks += [(f"level:{self.features[j]}", self.features[j]) for j in np.flatnonzero(out_of_range[i])]
                out.alerts.append(self._alert(device, spans[i], score, scores.feature_errors[i], checks, transition))
        out.scored = len(devices)
        out.window_devices = devices
        out.window_end_ms = np.fromiter((s[1] for s in spans), np.int64, len(spans))
        out.window_ratio = ratio.astype(np.float32)
        out.window_open = is_open

    def _broken_rules(self, windows: np.ndarray, fresh: list[int]) -> np.ndarray:
        """(n, rules): whether each window's fresh readings break each rule.

        Only the readings new to the window are checked, so with stride > 1 none is skipped and none
        is checked twice (one bad reading makes one window anomalous, not T of them).
        """
        n, length = windows.shape[:2]
        broken = np.zeros((n, len(self.config.rules)), bool)
        if not self.config.rules:
            return broken
        is_fresh = np.arange(length) >= length - np.asarray(fresh)[:, None]  # (n, T)
        for k, (rule, column) in enumerate(zip(self.config.rules, self._rule_columns)):
            broken[:, k] = (rule.broken(windows[:, :, column]) & is_fresh).any(axis=1)
        return broken

    def _model_ratio(self, devices: list[str], scores: Scores) -> np.ndarray:
        """Each window's model verdict as a ratio to its line, by the calibrated method."""
        if self._method == "per-feature":
            return row_max(scores.feature_errors / self._feature_lines)
        if self._method == "dynamic":
            smoothed = np.empty(len(devices), np.float32)
            for i, device in enumerate(devices):  # in reading order, so each device's EWMA stays causal
                previous = self._smoothed.get(device)
                x = float(scores.score[i])
                value = x if previous is None else self._alpha * x + (1.0 - self._alpha) * previous
                self._smoothed[device] = smoothed[i] = value
            return smoothed / self.threshold
        return scores.score / self.threshold

    def _alert(
        self,
        device: str,
        span: tuple[int, int],
        score: float,
        feature_errors: np.ndarray,
        checks: list[tuple[str, str]],
        transition: Transition,
    ) -> Alert:
        errors = {f: round(float(e), 4) for f, e in zip(self.features, feature_errors)}
        top = checks[0][1] if checks else max(errors, key=errors.__getitem__)
        return Alert(
            alert_id=Alert.make_id(transition.episode_id, transition.kind, self.model_version),
            device_id=device,
            window_start=iso_ms(span[0]),
            window_end=iso_ms(span[1]),
            score=round(score, 4),
            threshold=round(self.threshold, 4),
            severity=severity(transition.peak_score),
            feature_errors=errors,
            top_feature=top,
            check_failures=[name for name, _ in checks],
            model_version=self.model_version,
            detected_at=iso_ms(int(time.time() * 1000)),
            episode=Episode(
                episode_id=transition.episode_id,
                state=transition.kind,
                started_at=iso_ms(transition.started_ms),
                ended_at=iso_ms(transition.ended_ms) if transition.ended_ms is not None else None,
                peak_ratio=round(min(transition.peak_score, 1e6), 4),
                windows=transition.windows,
            ),
        )


def _row_any(a: np.ndarray) -> np.ndarray:
    """Whether each row of an (n, k) boolean array has a True; all False when k is 0."""
    return functools.reduce(np.logical_or, a.T, np.zeros(len(a), bool))
