"""The detector: readings in, alerts out. The worker and ``floorwatch evaluate`` both run this.

For each micro-batch of decoded readings it goes window -> batch -> score -> threshold ->
episode, causally, reading by reading: a window is scored as soon as its last reading arrives,
with nothing from later readings.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from stream_app.contracts import Alert, Episode, Reading, iso_ms
from stream_app.pipeline import adaptation
from stream_app.pipeline.episodes import EpisodeRule, EpisodeTracker, OpenEpisode, Transition
from stream_app.pipeline.columns import ReadingColumns
from stream_app.pipeline.line_methods import LineMethod, line_method
from stream_app.pipeline.lines import AdaptiveLines, LineConfig
from stream_app.models.store import ModelBundle
from stream_app.pipeline.reservoir import NormalReservoir, RefitConfig, RefitResult
from stream_app.pipeline.rules import Rule
from stream_app.pipeline.profiles import HourProfiles, ProfileConfig
from stream_app.pipeline.seasonal import SeasonalLines, SeasonConfig
from stream_app.pipeline.shifts import LevelShifts, ShiftConfig
from stream_app.pipeline.scorer import Scores, WindowScorer, row_max
from stream_app.pipeline.thresholds import MAX_RESTING_VALUES, severity
from stream_app.pipeline.transients import TransientConfig, TransientMemory
from stream_app.pipeline.windows import Push, WindowStore, ranks

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeviceStatus:
    """The latest known state of one device, as written to its Redis hash."""

    device_id: str
    last_reading_ms: int
    state: Literal["normal", "anomalous"] = "normal"
    last_score: float | None = None
    # For the score history (worker/history.py): the line in score units, the distance to normal
    # (1.0 = the line) and the last reading's values (the reading's own dict, not a copy).
    line: float | None = None
    ratio: float | None = None
    values: dict[str, float] | None = None


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
    # Windows over a device's line that matched its own recent brief excursions, so opened no episode (transients.py).
    known_spikes: int = 0
    # Seconds of the batch spent in the model call (the rest of ``process`` is the detector's own).
    model_seconds: float = 0.0
    # Per scored window, in order (for evaluation): device and window end ms.
    window_devices: list[str] = field(default_factory=list)
    window_end_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    # The window's distance to normal (1.0 = the line), and whether its device's episode is open after it.
    window_ratio: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    window_open: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    # With ``DetectorConfig.trace`` (evaluation's --detections): the model score, the device's line in
    # score units, the episode the window belongs to and whether an episode opened at it.
    window_score: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    window_line: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    window_episode: list[str | None] = field(default_factory=list)
    window_opened: np.ndarray = field(default_factory=lambda: np.empty(0, bool))


@dataclass(slots=True)
class _Batch:
    """One batch's windows as ``Detector._score`` judges them: its inputs per window (the model's verdict,
    the checks) and what it fills in (ratios, trace, alerts with their window, refit windows)."""

    devices: list[str]
    windows: np.ndarray  # (n, T, F)
    spans: list[tuple[int, int]]
    scores: Scores
    model: np.ndarray  # the model's distance to its calibrated line (1.0 = the line), before the device's own line
    level: np.ndarray  # (n, F): each feature's distance to the edge of its envelope, or its level shift's if further
    shift: np.ndarray  # (n, F): each feature's level shift (shifts.py), filled in round by round
    jump: np.ndarray  # (n, F): each feature's largest step between two readings, 1.0 = its jump line (or zeros)
    jump_max: np.ndarray  # (n,): judged against the jump line itself, not a device line a wandering level raised
    hour: np.ndarray  # (n,): a lone sensor's last finished hour against the same hour before (profiles.py), or zeros
    level_max: np.ndarray
    stuck: np.ndarray  # (n, F)
    broken: np.ndarray  # (n, rules)
    checked: np.ndarray  # a check failed (cleared where the sensor sits at a resting value)
    statuses: dict[str, DeviceStatus]
    end_ms: np.ndarray
    ratio: np.ndarray
    is_open: np.ndarray
    line: np.ndarray  # (trace only, as the next two)
    episode: list[str | None]
    opened: np.ndarray
    slots: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # (with level shifts) window-store slots
    alerts: list[tuple[int, Alert]] = field(default_factory=list)
    normal: list[int] = field(default_factory=list)  # plainly normal windows, for the refit reservoir
    known_spikes: int = 0


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    stride: int = 1
    max_gap_ms: int = 60_000
    max_future_ms: int = 300_000
    rule: EpisodeRule = EpisodeRule()
    rules: tuple[Rule, ...] = ()  # operator bounds, checked on each reading beside the model
    lines: LineConfig = LineConfig()
    season: SeasonConfig = SeasonConfig()  # hours of the day / week whose verdicts recur (seasonal.py)
    transients: TransientConfig = TransientConfig()  # brief excursions a device keeps making (transients.py)
    shifts: ShiftConfig = ShiftConfig()  # a sensor's median against its recent medians (shifts.py)
    jumps: bool = True  # a lone sensor's step between two readings against its jump line (thresholds.jump_lines)
    profiles: ProfileConfig = ProfileConfig()  # a lone sensor's hour against the same hour of past days and weeks
    refit: RefitConfig = RefitConfig()
    trace: bool = False  # fill Detection's per-window evaluation arrays
    # A level envelope learnt from fewer windows than this describes a few hours of one machine, not its
    # process: it is then widened ``short_check_widening`` times around its centre (and says so), so it still
    # catches a level far outside anything calibration saw; 0: the check is off below it.
    min_check_windows: int = 1000
    short_check_widening: float = 2.0


# Called when a group's reservoir is due for a refit: (detector, recent normal windows oldest first, stream ms).
RefitHook = Callable[["Detector", np.ndarray, int], None]


class Detector:
    line: LineMethod  # the model's threshold method (line_methods.py), with its per-device state
    # Judge a batch round by round, quiet windows over arrays (``_score``); False: every window one by one,
    # the reference the batch path is tested against.
    batch_quiet: bool = True
    # A round of fewer windows than this is judged window by window: its arrays would cost more than they save
    # (hot_path.py, post-model us a reading, arrays vs one by one: rounds of 16 12.3 vs 9.9, 32 about even,
    # ~43 7.0 vs 9.9).
    min_round: int = 32

    def __init__(
        self, bundle: ModelBundle, scorer: WindowScorer, config: DetectorConfig = DetectorConfig(), *, on_refit: RefitHook | None = None
    ) -> None:
        self.config = config
        self.features = bundle.card.features
        unknown = [r.name for r in config.rules if r.feature not in self.features]
        if unknown:
            known = ", ".join(self.features)
            raise ValueError(f"{', '.join(unknown)}: no such feature in model {bundle.version} (features: {known})")
        self._rule_columns = [self.features.index(r.feature) for r in config.rules]
        # A reading's model features in model order, in one C call (a lone feature gives a scalar, reshaped later).
        self._get_features = operator.itemgetter(*self.features)
        self.windows = WindowStore(bundle.card.window, len(self.features), max_gap_ms=config.max_gap_ms)
        self.episodes = EpisodeTracker(config.rule)
        # Each device's line follows its own normal (lines.py), for the model and for the level check.
        self.model_lines = AdaptiveLines(config.lines)
        self.level_lines = AdaptiveLines(config.lines)
        # What recurs at the same hour of the day or week widens that hour's lines (model, level check).
        self.season = SeasonalLines(config.season, channels=2)
        # Brief excursions each device keeps making (a busy stream's benign spikes): matched, they open nothing.
        self.transients = TransientMemory(config.transients, window=bundle.card.window)
        # Where each sensor sat lately (its window medians), by window-store slot: a step the model reconstructs.
        self.shifts = LevelShifts(config.shifts, bundle.card.window, len(self.features))
        # A lone sensor's hours against the same hours of past days and weeks (a quiet weekday, a missed start).
        self.profiles = HourProfiles(config.profiles)
        self._profiling = config.profiles.enabled and len(self.features) == 1
        # The version whose calibrated line the lines are in units of (adaptation.py): kept by fine-tuned refits
        # and hot reloads, which carry the lines over; a model trained afresh (its lines relearnt) starts its own.
        self.line_basis = bundle.version
        self._seen_ms: dict[str, int] = {}  # each device's last reading, by the worker's clock (eviction)
        # Continual learning: recent plainly normal windows of this group, and who refits on them.
        self.reservoir = NormalReservoir(bundle.card.window, len(self.features), config.refit) if on_refit else None
        self.on_refit = on_refit
        self.refits = {"kept": 0, "discarded": 0}
        self.known_spikes = 0  # windows over a line that matched the device's own brief excursions (transients.py)
        self._episode_top: dict[str, str] = {}  # device -> the top feature of its open episode
        # Stuck runs longer than a window: each device's run of equal readings so far, for the features whose
        # stuck run does not fit in one window (quantised sensors that often repeat themselves).
        self._long_runs: dict[str, np.ndarray] = {}
        # Values a device's sensor sat at, raised a stuck episode, then left by itself: it rests there
        # (an idle floor), so a later run at one of them is not a fault. device -> feature -> values.
        self._resting: dict[str, dict[int, list[float]]] = {}
        self._stuck_at: dict[str, dict[int, float]] = {}  # device -> the stuck values of its open episode
        # A background refit's result, installed at the start of the next batch (refit.BackgroundRefitter).
        self.pending_refit: RefitResult | None = None
        self.use_model(bundle, scorer)

    def use_model(self, bundle: ModelBundle, scorer: WindowScorer) -> None:
        """Score with another version of this group's model from the next batch on (a refit, a promotion).

        Windows, episodes and lines carry over: the model must have the same features and window length.
        """
        if bundle.card.features != self.features or bundle.card.window != self.windows.length:
            raise ValueError(
                f"model {bundle.version} has other features or window length than {self.features} x {self.windows.length}"
            )
        self.bundle = bundle
        self.scorer = scorer
        thresholds = bundle.thresholds
        self.threshold = thresholds.threshold
        confident = bundle.card.training.validation_windows >= self.config.min_check_windows
        widen = 1.0 if confident else self.config.short_check_widening
        envelope = thresholds.feature_envelope if widen > 0 else {}
        if thresholds.feature_envelope and not confident:
            log.warning(
                "model %s: level check %s (calibrated on %d windows, fewer than %d)",
                bundle.version, f"widened {widen:g}x" if widen > 0 else "off",
                bundle.card.training.validation_windows, self.config.min_check_windows,
            )  # fmt: skip
        bounds = np.array([envelope.get(f, (-np.inf, np.inf)) for f in self.features], np.float64)
        # A sensor that never moved in calibration has an envelope of zero width: any reading would be
        # infinitely far from normal. It says nothing about how far is too far, so it has no level check;
        # nor has a sensor whose level wanders (the model reads it centred): where it sits is not a fault.
        finite = np.isfinite(bounds).all(axis=1) & (bounds[:, 1] - bounds[:, 0] > 1e-9 * (1.0 + np.abs(bounds).max(axis=1)))
        finite &= bundle.scaler.centre_mask() == 0
        with np.errstate(invalid="ignore"):  # (-inf + inf) / 2 for features without an envelope, masked below
            self._centre = np.where(finite, bounds.mean(axis=1), 0.0).astype(np.float32)
            self._half = np.where(finite, (bounds[:, 1] - bounds[:, 0]) / 2 * widen, np.inf).astype(np.float32)
        # Each feature's stuck run: how many equal readings in a row are not chance for it (thresholds.stuck_runs).
        # A run longer than the window is counted across windows (``_long_runs``); a feature without one has none.
        never = np.iinfo(np.int64).max
        if thresholds.stuck_runs:
            runs = [thresholds.stuck_runs.get(f, never) for f in self.features]
        else:  # models from before per-feature runs: one run for the features that never sat still
            run = min(thresholds.stuck_run or bundle.card.window, bundle.card.window)
            stuck = thresholds.stuck_features
            runs = [run if stuck is None or f in stuck else never for f in self.features]
        self._stuck_runs = np.array(runs, np.int64)
        self._long_stuck = (self._stuck_runs > bundle.card.window) & (self._stuck_runs < never)
        # Values the sensors rested at in training (thresholds.resting_values): no device is stuck there.
        self._trained_rest = {
            j: frozenset(v) for j, f in enumerate(self.features) if (v := thresholds.resting_values.get(f))
        }
        line = line_method(thresholds.method)(thresholds, self.features)
        if hasattr(self, "line"):  # another version of this group's model: the devices' state carries over
            line.carry_over(self.line)
        self.line = line
        # A lone sensor's largest step between two readings against the largest it made in training
        # (thresholds.jump_lines); inf where there is none (several sensors, older models).
        jump_lines = np.array([thresholds.jump_lines.get(f, np.inf) for f in self.features], np.float32)
        self._jump_line = jump_lines if self.config.jumps and np.isfinite(jump_lines).any() else None
        # Where the jump check watches a lone sensor, a spike is the jump check's (its own line, a device's
        # repeated spikes known): the peak line beside it read a busy stream's benign spikes as faults.
        self._peak_threshold = thresholds.peak_threshold if self._jump_line is None else None

    @property
    def model_version(self) -> str:
        return self.bundle.version

    def unseen(self, device_ids: Iterable[str]) -> list[str]:
        """Devices this detector has no reading of yet (a new device, or one taken over from another worker)."""
        return [d for d in device_ids if d not in self.windows]

    def evict_idle(self, now_ms: int, idle_ms: int) -> list[str]:
        """Drop every piece of per-device state (window, episode, lines, EWMA) of the devices that have
        sent no reading for ``idle_ms`` by the worker's clock (not the readings' timestamps: a replay
        of old data is not idle); return their ids. A device that comes back starts afresh, and an
        episode it had open is resumed from Redis like after a handover."""
        cutoff = now_ms - idle_ms
        idle = [d for d, seen in self._seen_ms.items() if seen < cutoff]
        for device in idle:
            del self._seen_ms[device]
            self.shifts.forget(self.windows.slot(device))
            self.windows.remove(device)
            self.episodes.forget(device)
            self.model_lines.forget(device)
            self.level_lines.forget(device)
            self.transients.forget(device)
            self.season.forget(device)
            self.profiles.forget(device)
            self.line.forget(device)
            self._episode_top.pop(device, None)
            self._long_runs.pop(device, None)
            self._resting.pop(device, None)
            self._stuck_at.pop(device, None)
        return idle

    @property
    def devices(self) -> int:
        """Devices this detector holds state for."""
        return len(self._seen_ms)

    def resume(self, device_id: str, episode: OpenEpisode) -> None:
        """Carry on with an episode the device's previous worker had open (see ``EpisodeTracker.resume``)."""
        self.episodes.resume(device_id, episode)

    def known_devices(self, since_ms: int = 0) -> list[str]:
        """The devices this detector holds state for, with a reading since ``since_ms`` (the worker's clock)."""
        return [d for d, seen in self._seen_ms.items() if seen >= since_ms]

    def export_state(self, device_id: str) -> bytes | None:
        """What the device has learnt (its model and level lines, its seasonal hours) as bytes, for
        ``restore_state`` in a later worker (adaptation.py); None for a device with nothing learnt."""
        parts = {
            name: state
            for name, state in (
                ("model", self.model_lines.export(device_id)),
                ("level", self.level_lines.export(device_id)),
                ("season", self.season.export(device_id)),
                ("transients", self.transients.export(device_id)),
                # (named "shifts" before 2026-11-27, when a sensor judged alone kept its medians: not taken up)
                ("levels", self.shifts.export(self.windows.slot(device_id))),
                ("hours", self.profiles.export(device_id)),
            )
            if state is not None
        }
        return adaptation.pack(self.line_basis, parts) if parts else None

    def restore_state(self, device_id: str, state: bytes) -> bool:
        """Take up an ``export_state`` of a device this detector has not met, if it is of this detector's
        line basis (False otherwise: the device warms up as new). All or nothing: ValueError, with nothing
        taken up, for bytes that are not such a state."""
        basis, parts = adaptation.unpack(state)
        if basis != self.line_basis or not self.unseen((device_id,)):
            return False
        targets: dict[str, AdaptiveLines | SeasonalLines | TransientMemory | HourProfiles] = {
            "model": self.model_lines, "level": self.level_lines, "season": self.season, "transients": self.transients,
            "hours": self.profiles,
        }  # fmt: skip
        try:
            restored = [targets[name].restore(device_id, part) for name, part in parts.items() if name in targets]
            if "levels" in parts and self.shifts.enabled:  # by window-store slot: the device gets its slot now
                slot = self.windows.claim(device_id)
                self._seen_ms.setdefault(device_id, int(time.time() * 1000))  # (so that eviction sees it)
                restored.append(self.shifts.restore(slot, parts["levels"]))
        except ValueError:
            for target in targets.values():
                target.forget(device_id)
            if self.windows.slot(device_id) is not None:
                self.windows.remove(device_id)
                self._seen_ms.pop(device_id, None)
            raise
        return any(restored)

    def carry_over_from(self, old: Detector) -> bool:
        """Take over the per-device state of the detector this one replaces (a hot reload, reload.py).

        Open episodes (and their runs of windows over the line) always carry over: they describe
        the device, not the model, so a failure that spans a swap stays one episode. Windows and the
        dynamic method's smoothed scores carry over when the window length and features (names and
        order) match; then no reading goes unscored. Otherwise each device's window refills from
        its next readings (T - 1 readings unscored per device) and False is returned.
        """
        self.episodes = old.episodes
        self._episode_top = old._episode_top
        self._resting, self._stuck_at = old._resting, old._stuck_at  # what the sensors do, not the model
        # Each device's line is in units of its model's calibrated line, and what a device's normal looks
        # like relative to "typical" does not depend on which version scores it: the lines carry over.
        self.model_lines, self.level_lines = old.model_lines, old.level_lines
        self.season = old.season
        self.transients = old.transients  # in units of the lines, which carry over
        self.line_basis = old.line_basis
        self._seen_ms = old._seen_ms
        same_shape = old.features == self.features and old.windows.length == self.windows.length
        if same_shape:
            self.windows = old.windows
            self.shifts = old.shifts  # by the windows' slots, in the sensors' own units
            self.profiles = old.profiles  # in the sensor's own units
            self.line.carry_over(old.line)
            self._long_runs = old._long_runs
            if old.reservoir is not None and self.reservoir is not None:
                self.reservoir = old.reservoir  # recent normal windows are the group's, whatever the version
        return same_shape

    def process(self, readings: Sequence[Reading], *, now_ms: int | None = None) -> Detection:
        """Window, score and judge a micro-batch, in order. ``readings`` may be ``ReadingColumns``
        (the worker's hot path: no ``Reading`` object is made unless one is refused)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if self.pending_refit is not None:
            result, self.pending_refit = self.pending_refit, None
            record_refit(self, result)
        out = Detection()
        columns = ReadingColumns.of(readings)
        rows, values = self._values_of(columns, out)
        ids, stamps, dicts = columns.device_ids, columns.ts, columns.values
        length, stride = self.windows.length, self.config.stride
        ts = np.array(stamps, np.int64) if len(rows) == len(stamps) else np.fromiter((stamps[k] for k in rows), np.int64, len(rows))
        late = ts > now_ms + self.config.max_future_ms
        refused = [(int(k), f"timestamp {iso_ms(int(t))} is in the future") for k, t in zip(rows[late], ts[late])] if late.any() else []
        kept = rows[~late]
        try:
            pushed = self.windows.push_many([ids[k] for k in kept.tolist()], ts[~late], values[~late], stride)
        except Exception as exc:  # a bug here must not sink the worker: the batch's readings are refused, with why
            refused += [(int(k), f"could not be windowed: {type(exc).__name__}: {exc}") for k in kept]
            pushed = None
        devices: list[str] = []
        if pushed is not None:
            codes = pushed.codes
            out.duplicates = int(np.count_nonzero(codes == Push.DUPLICATE))
            behind = kept[codes == Push.OUT_OF_ORDER]
            refused += [(int(k), "out of order: older than the device's last reading") for k in behind]
            # Each device's status: made at its first windowed reading, carrying its last one.
            taken = kept[codes >= 0].tolist()
            last = dict(zip([ids[k] for k in taken], taken))
            statuses, is_open = out.statuses, self.episodes.is_open
            for device, k in last.items():
                statuses[device] = DeviceStatus(device, stamps[k], "anomalous" if is_open(device) else "normal", values=dicts[k])
            windowed = kept[pushed.rows].tolist()
            devices = [ids[k] for k in windowed]
            spans = list(zip(pushed.first_ms.tolist(), pushed.last_ms.tolist()))
            # Per window: how many of its last readings no earlier window was scored with.
            fresh = np.where(pushed.filled == length, pushed.filled, min(stride, length)).tolist()
        for k, reason in sorted(refused, key=lambda r: r[0]) if len(refused) > 1 else refused:
            out.refused.append(Refused(columns[k], reason))
        seen = self._seen_ms
        for device in out.statuses:  # the devices that had a reading windowed in this batch
            seen[device] = now_ms
        if pushed is not None and devices:
            self._score(devices, pushed.codes[pushed.rows], pushed.windows, spans, pushed.last_ms, fresh, out)
            stream_ms = int(pushed.last_ms.max())
            if self.reservoir is not None and self.on_refit is not None and self.reservoir.due(stream_ms):
                self.reservoir.fitted(stream_ms)
                self.on_refit(self, self.reservoir.windows(), stream_ms)
        return out

    def _values_of(self, columns: ReadingColumns, out: Detection) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the readings that have every model feature, and those features as one (n, F)
        array; readings lacking one are refused."""
        get = self._get_features
        try:
            values = [get(v) for v in columns.values]
            rows = np.arange(len(values))
        except KeyError:  # rare: sort the usable from the refused one by one
            kept: list[int] = []
            values = []
            for k, reading in enumerate(columns.values):
                try:
                    values.append(get(reading))
                except KeyError:
                    missing = [f for f in self.features if f not in reading]
                    out.refused.append(Refused(columns[k], f"missing sensor(s) {', '.join(missing)} required by the model"))
                    continue
                kept.append(k)
            rows = np.array(kept, np.int64)
        return rows, np.array(values, np.float32).reshape(len(values), len(self.features))

    def _score(
        self,
        devices: list[str],
        slots: np.ndarray,
        windows: np.ndarray,
        spans: list[tuple[int, int]],
        end_ms: np.ndarray,
        fresh: list[int],
        out: Detection,
    ) -> None:
        """Score and judge the batch's windows (``slots``: each one's device's window-store slot; ``end_ms``:
        the spans' ends as an array)."""
        started = time.perf_counter()
        scores = self.scorer.score(windows)
        out.model_seconds += time.perf_counter() - started
        # Checks beside the model: a sensor repeating one value for its last readings is stuck, and
        # a window whose mean leaves the normal envelope is out of range, whatever the model says.
        # (Reductions over the short window and feature axes are written as a few whole-array ops:
        # numpy's own, e.g. np.ptp(axis=1), cost ~1 us a window, a tenth of the detector's time.)
        stuck = self._stuck(devices, windows, fresh)
        level = np.abs(np.einsum("ntf->nf", windows) / windows.shape[1] - self._centre) / self._half  # 1.0 = edge of the envelope
        model = self.line.ratio(devices, scores.score, scores.feature_errors)  # 1.0 = the model's calibrated line
        if scores.peak is not None and self._peak_threshold:
            model = np.maximum(model, scores.peak / self._peak_threshold)
        broken = self._broken_rules(windows, fresh)
        n = len(devices)
        jump, jump_max = np.zeros_like(level), np.zeros(n, level.dtype)  # (models of several sensors: no work)
        if self._jump_line is not None:  # a step between two readings that no step in training came near
            jump = np.abs(np.diff(windows, axis=1)).max(axis=1) / self._jump_line
            jump_max = row_max(jump)
        trace = self.config.trace
        batch = _Batch(
            devices, windows, spans, scores, model, level, np.zeros_like(level), jump, jump_max, np.zeros(n, level.dtype), row_max(level), stuck, broken, _row_any(stuck) | _row_any(broken),
            statuses=out.statuses, end_ms=end_ms, ratio=np.empty(n, np.float32), is_open=np.zeros(n, bool),
            line=np.empty(n if trace else 0, np.float32), episode=[None] * n if trace else [], opened=np.zeros(n if trace else 0, bool),
        )  # fmt: skip
        # A lone sensor's median against its recent ones (shifts.py): read before each round, kept after it.
        shifting = self.shifts.enabled
        if shifting:
            batch.slots = slots
        # Round r holds each device's r-th window of the batch: no device twice, so a round is judged over
        # arrays (lines read before it, observed after it) as if every device had sent one reading. The
        # usual batch is one round (many devices, a reading each) or a few (a backlog drained partition by
        # partition: a run of readings per device). From the first thin round on (a few devices' long runs)
        # the windows go one by one, in order, as every window does when ``batch_quiet`` is off.
        rounds = _rounds(slots)
        thinnest = self.min_round if self.batch_quiet else n + 1
        taken = 0
        for members in rounds:
            if len(members) < thinnest:
                break
            if shifting:
                self._shift_in(batch, members)
            self._judge_round(batch, members)
            if shifting:
                self._shift_out(batch, members)
            taken += 1
        rest = np.sort(np.concatenate(rounds[taken:])).tolist() if taken < len(rounds) else []
        season, model_lines, level_lines = self.season, self.model_lines, self.level_lines
        if shifting and rest:  # read for all the rest at once; again for a window whose medians changed since
            ahead, shifts = np.array(rest), self.shifts
            level_before, level_max_before = batch.level[ahead].copy(), batch.level_max[ahead].copy()
            self._shift_in(batch, ahead)
            read_at = [shifts.changes(slot) for slot in slots[ahead].tolist()]
        for k, i in enumerate(rest):
            device = devices[i]
            if shifting and shifts.changes(int(slots[i])) != read_at[k]:
                batch.level[i], batch.level_max[i], batch.shift[i] = level_before[k], level_max_before[k], 0.0
                self._shift_in(batch, np.array([i]))
            if self._profiling:
                self._hours_in(batch, np.array([i]))
            # Recorded whatever the verdict (seasonal.py: only what recurs every cycle widens a line).
            m_season, l_season = season.observe(device, spans[i][1], (float(model[i]), float(max(batch.level_max[i], batch.jump_max[i]))))
            m_line, l_line = max(model_lines.line(device), m_season), max(level_lines.line(device), l_season)
            self._judge(batch, i, m_line, l_line, max(1.0, l_season), model_lines.learning(device), defer=False)
            if shifting:
                shifts.observe_one(int(slots[i]), windows[i], int(batch.end_ms[i]), not batch.is_open[i] and batch.ratio[i] <= 1.0)
        if self.reservoir is not None and batch.normal:
            self.reservoir.add_many(windows, np.sort(np.array(batch.normal)))  # in window order
        if batch.alerts:
            batch.alerts.sort(key=operator.itemgetter(0))  # in window order, as one by one (stable: a window's own in order)
            out.alerts.extend(alert for _, alert in batch.alerts)
        out.scored = n
        out.known_spikes = batch.known_spikes
        self.known_spikes += batch.known_spikes
        out.window_devices = devices
        out.window_end_ms = batch.end_ms
        out.window_ratio = batch.ratio
        out.window_open = batch.is_open
        if trace:
            out.window_score = scores.score.astype(np.float32)
            out.window_line = batch.line
            out.window_episode = batch.episode
            out.window_opened = batch.opened

    def _shift_in(self, b: _Batch, members: np.ndarray) -> None:
        """Put the level shifts of windows of distinct devices into their level verdicts (shifts.py)."""
        members = members[self.shifts.ready(b.slots[members])]  # (a median is a sort: only where it is judged)
        if len(members):
            shift = self.shifts.ratios(b.slots[members], self.shifts.levels(b.windows[members]))
            b.shift[members] = shift
            b.level[members] = level = np.maximum(b.level[members], shift)
            b.level_max[members] = row_max(level)

    def _hours_in(self, b: _Batch, members: np.ndarray) -> None:
        """Record the newest readings of windows of distinct devices in their hour profiles and put each
        device's last finished hour's verdict into the level verdict (profiles.py; one sensor)."""
        hour = self.profiles.observe_many([b.devices[k] for k in members.tolist()], b.end_ms[members], b.windows[members, -1, 0])
        b.hour[members] = hour
        level = np.maximum(b.level[members, 0], hour)
        b.level[members, 0] = level
        b.level_max[members] = level

    def _shift_out(self, b: _Batch, members: np.ndarray) -> None:
        """Once judged, their devices keep the medians of those under the line and outside an episode."""
        quiet = ~b.is_open[members] & (b.ratio[members] <= 1.0)
        self.shifts.observe(b.slots[members], b.windows[members], b.end_ms[members], quiet)

    def _judge_round(self, b: _Batch, members: np.ndarray) -> None:
        """Judge windows of distinct devices (``members``, ascending), each its device's next in the batch.

        Their lines and warm-up are read as arrays before, and their observations (season, lines) made over
        the round; a quiet window of a device with no episode going is judged over the round too (its
        episode has no transition then). The rest go one by one."""
        model_lines, level_lines, episodes = self.model_lines, self.level_lines, self.episodes
        devices = [b.devices[k] for k in members.tolist()]
        m_slots, l_slots = model_lines.slots(devices), level_lines.slots(devices)
        m_before, l_before, learning_before = self._lines_before(m_slots, l_slots)
        if self._profiling:
            self._hours_in(b, members)
        model, level_max = b.model[members], b.level_max[members]
        # A jump is seen by the seasonal lines in the level channel (a step at the same hour every day is a
        # schedule: idle to work) and judged against its own line, widened only by what recurs at that hour.
        seen = level_max if self._jump_line is None else np.maximum(level_max, b.jump_max[members])
        allow = self.season.observe_many(devices, b.end_ms[members], np.stack([model, seen], axis=1).astype(np.float64))
        m_line = np.maximum(np.asarray(m_before), allow[:, 0])
        l_line = np.maximum(np.asarray(l_before), allow[:, 1])
        # (a float32 verdict over a float line divides in float32, as the window-by-window arithmetic)
        r = np.maximum(model / m_line.astype(model.dtype), level_max / l_line.astype(level_max.dtype))
        if self._jump_line is not None:
            j_line = np.maximum(1.0, allow[:, 1])
            r = np.maximum(r, b.jump_max[members] / j_line.astype(level_max.dtype))
        r = np.where(np.asarray(learning_before), np.minimum(r, r.dtype.type(1.0)), r)
        maybe = np.flatnonzero((r <= 1.0) & ~b.checked[members])  # (NaN is not quiet: it goes one by one)
        handled = np.zeros(len(members), bool)
        handled[maybe] = episodes.update_quiet([devices[k] for k in maybe.tolist()], b.end_ms[members[maybe]].tolist())
        at = np.flatnonzero(handled)
        rows = members[at]
        b.ratio[rows] = r[at]
        lines = self.threshold * m_line[at]
        if self.config.trace:
            b.line[rows] = lines
        statuses = b.statuses
        for device, score, device_line, device_ratio in zip(
            [devices[k] for k in at.tolist()], b.scores.score[rows].tolist(), lines.tolist(), r[at].tolist()
        ):
            status = statuses[device]
            status.last_score, status.line, status.ratio, status.state = score, device_line, device_ratio, "normal"
        if self.reservoir is not None:
            b.normal += rows[~np.asarray(learning_before)[at]].tolist()
        deferred = handled.copy()  # windows to observe after the round
        m_season, l_season = allow[:, 0].tolist(), allow[:, 1].tolist()  # (Python floats: the arithmetic stays theirs)
        for k in np.flatnonzero(~handled).tolist():
            m, l = max(m_before[k], m_season[k]), max(l_before[k], l_season[k])
            deferred[k] = self._judge(b, int(members[k]), m, l, max(1.0, l_season[k]), learning_before[k], defer=True)
        if deferred.any():
            observed = [devices[k] for k in np.flatnonzero(deferred).tolist()]
            model_lines.observe_each(observed, model[deferred], m_slots[deferred])
            level_lines.observe_each(observed, level_max[deferred], l_slots[deferred])

    def _judge(self, b: _Batch, i: int, m_line: float, l_line: float, j_line: float, learning: bool, *, defer: bool) -> bool:
        """Judge window ``i`` against its device's lines (``j_line``: the jump line's, 1.0 unless jumps recur at
        this hour): its episode's transitions and their alerts, its status and trace. Returns whether its
        lines' observation is left to the caller (``defer``, and nothing happened that must follow it: a
        transition may relearn the lines)."""
        device = b.devices[i]
        model, level_max, stuck, broken, checked = b.model[i], b.level_max[i], b.stuck[i], b.broken[i], bool(b.checked[i])
        jump = b.jump_max[i] / j_line
        r = max(model / m_line, level_max / l_line, jump)
        if checked and (self._resting or self._trained_rest):  # (here: a rest learnt earlier in this batch counts)
            self._at_rest(device, b.windows[i, -1], stuck)
            checked = bool(stuck.any() or broken.any())
            b.checked[i] = checked
        if checked:
            r = np.inf
        elif learning:
            r = min(r, 1.0)  # its line is not trusted yet: it learns, it does not alert
        b.ratio[i] = r
        episodes = self.episodes
        known = False
        if 1.0 < r < np.inf:  # a crossing: one like the device's own recent spikes opens nothing (transients.py)
            # (a jump is matched as the level check's crossings are)
            known = self.transients.crossing(
                device, b.spans[i][1], float(model), float(max(level_max, b.jump_max[i])), episodes.interval_ms(device),
                model_over=model > m_line, level_over=level_max > l_line or jump > 1.0,
                feature=int(np.argmax(b.scores.feature_errors[i] if model / m_line >= level_max / l_line else b.level[i])),
                match=not episodes.is_open(device),
            )  # fmt: skip
            b.known_spikes += known
        transitions = episodes.update(device, b.spans[i][1], 1.0 if known else float(r))
        b.is_open[i] = open_now = episodes.is_open(device)
        deferred = False
        # (a known spike is kept out of the lines' history, as an episode's windows are, and so is a run held back
        # as marginal past where it would have opened: the line must not learn a slow fault while it waits)
        if not open_now and not known and not episodes.holding(device):
            if defer and not transitions:
                deferred = True
            else:
                self.model_lines.observe(device, float(model))
                self.level_lines.observe(device, float(level_max))
            if self.reservoir is not None and r <= 1.0 and not learning:
                b.normal.append(i)
        status = b.statuses[device]
        status.last_score = float(b.scores.score[i])
        status.line, status.ratio = self.threshold * m_line, float(r)
        status.state = "anomalous" if open_now else "normal"
        if self.config.trace:
            b.line[i] = self.threshold * m_line
            b.opened[i] = any(t.kind == "open" for t in transitions)
            b.episode[i] = next((t.episode_id for t in transitions), None) or episodes.open_episodes_of(device)
        for transition in transitions:
            if transition.reason == "max duration":
                # It lasted: this is how the device runs now. Relearn its lines and levels from here.
                self.model_lines.relearn(device)
                self.level_lines.relearn(device)
                self.shifts.forget(self.windows.slot(device))
            self._note_rest(device, transition, b.windows[i, -1], stuck)
            # (check, feature); the first names the alert's top feature.
            checks = [(self.config.rules[k].name, self.config.rules[k].feature) for k in np.flatnonzero(broken)]
            checks += [(f"stuck:{self.features[j]}", self.features[j]) for j in np.flatnonzero(stuck)]
            over = b.level[i] / l_line > 1.0
            shifted = over & (b.shift[i] >= b.level[i])  # (the shift is what put it over)
            hourly = over & ~shifted & (b.hour[i] >= b.level[i])  # (or the hour against the same hour before)
            checks += [(f"level:{self.features[j]}", self.features[j]) for j in np.flatnonzero(over & ~shifted & ~hourly)]
            checks += [(f"shift:{self.features[j]}", self.features[j]) for j in np.flatnonzero(shifted)]
            checks += [(f"hour:{self.features[j]}", self.features[j]) for j in np.flatnonzero(hourly)]
            checks += [(f"jump:{self.features[j]}", self.features[j]) for j in np.flatnonzero(b.jump[i] > j_line)]
            b.alerts.append((i, self._alert(device, b.spans[i], b.scores, i, m_line, float(r), checks, transition)))
        if open_now and checked:  # after this window's transitions: an opening starts a fresh note
            self._note_stuck(device, b.windows[i, -1], stuck)
        return deferred

    def _lines_before(self, m_slots: np.ndarray, l_slots: np.ndarray) -> tuple[list[float], list[float], list[bool]]:
        """Per window of a round, its device's model line, level line and warm-up as they stand before the
        round (Python floats and bools: the loop's arithmetic stays that of ``AdaptiveLines.line``)."""
        return (
            self.model_lines.lines_at(m_slots).tolist(),
            self.level_lines.lines_at(l_slots).tolist(),
            self.model_lines.learning_at(m_slots).tolist(),
        )

    def _stuck(self, devices: list[str], windows: np.ndarray, fresh: list[int]) -> np.ndarray:
        """(n, F): whether each window's sensors have repeated one value for their stuck run, or longer.

        A run within the window is read off it; a feature whose stuck run is longer than the window
        carries its run over from the device's previous window while the whole window repeats.
        """
        length = windows.shape[1]
        run = _trailing_run(windows)
        long = self._long_stuck
        if long.any():
            runs = self._long_runs
            full = ((run >= length) & long).any(axis=1)
            for i in range(len(devices)) if runs or full.any() else ():  # in order: a device may have several
                if not full[i]:
                    runs.pop(devices[i], None)  # its run broke: it starts afresh
                    continue
                previous = runs.get(devices[i])
                if previous is not None and fresh[i] < length:  # the same unbroken stretch of readings
                    run[i] = np.where(run[i] >= length, previous + fresh[i], run[i])
                runs[devices[i]] = run[i].copy()
        return run >= self._stuck_runs

    def _at_rest(self, device: str, last: np.ndarray, stuck: np.ndarray) -> None:
        """Clear, in place, the stuck flags of sensors sitting at one of their resting values (from training,
        or learnt from this device's stream)."""
        for j, trained in self._trained_rest.items():
            if stuck[j] and float(last[j]) in trained:
                stuck[j] = False
        resting = self._resting.get(device)
        if resting:
            for j, values in resting.items():
                if stuck[j] and float(last[j]) in values:
                    stuck[j] = False

    def _note_stuck(self, device: str, last: np.ndarray, stuck: np.ndarray) -> None:
        """Remember the values the sensors of a device's open episode sat stuck at (the episode may have
        opened on the model's line: a step down to an idle floor is itself a large error)."""
        if stuck.any():
            at = self._stuck_at.setdefault(device, {})
            for j in np.flatnonzero(stuck).tolist():
                at.setdefault(j, float(last[j]))

    def _note_rest(self, device: str, transition: Transition, last: np.ndarray, stuck: np.ndarray) -> None:
        """Once an episode ends, its sensors have moved on by themselves (it closes after a quiet stretch,
        or when a new episode follows) or sat there so long it is how the device runs now: the values they
        sat stuck at in it are resting values, except one a sensor is still stuck at when a new episode
        closes it (that sensor has not left it: the stop may be the new fault). An opening starts a fresh note."""
        if transition.kind == "open":
            self._stuck_at.pop(device, None)
        elif transition.kind == "closed":
            at = self._stuck_at.pop(device, None)
            if at:  # every close: quiet, max duration, or a new episode
                resting = self._resting.setdefault(device, {})
                for j, value in at.items():
                    if transition.reason != "max duration" and stuck[j] and float(last[j]) == value:
                        continue
                    values = resting.setdefault(j, [])
                    if value not in values:
                        values.append(value)
                        del values[:-MAX_RESTING_VALUES]

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

    def _alert(
        self,
        device: str,
        span: tuple[int, int],
        scores: Scores,
        i: int,
        line: float,
        ratio: float,
        checks: list[tuple[str, str]],
        transition: Transition,
    ) -> Alert:
        errors = {f: round(float(e), 4) for f, e in zip(self.features, scores.feature_errors[i])}
        # The feature that raised the episode names every alert of it, the closing one too.
        top = self._episode_top.get(device) if transition.kind != "open" else None
        if top is None:
            top = checks[0][1] if checks else max(errors, key=errors.__getitem__)
        if transition.kind == "open":
            self._episode_top[device] = top
        elif transition.kind == "closed":
            self._episode_top.pop(device, None)
        threshold = self.threshold * line
        # ``score`` is the window's distance to normal in score units, so score > threshold exactly when the
        # window was over the line, whichever part (model or level check) put it there; a stuck sensor or a
        # broken rule (an infinite distance) keeps the model's score, and check_failures says why.
        score = ratio * threshold if np.isfinite(ratio) else float(scores.score[i])
        # The alert id names the escalation too: each update of one episode is its own alert.
        state_key = transition.kind if transition.kind != "update" else f"update:{severity(transition.peak_score)}"
        return Alert(
            alert_id=Alert.make_id(transition.episode_id, state_key, self.model_version),
            device_id=device,
            window_start=iso_ms(span[0]),
            window_end=iso_ms(span[1]),
            score=round(score, 4),
            threshold=round(threshold, 4),
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
                close_reason=transition.reason or None,
            ),
        )


def _trailing_run(windows: np.ndarray) -> np.ndarray:
    """(n, T, F) -> (n, F): how many of each window's last readings equal its very last one."""
    same = windows == windows[:, -1:, :]
    run = np.ones(same.shape[::2], np.int64)
    still = np.ones(same.shape[::2], bool)
    for t in range(windows.shape[1] - 2, -1, -1):  # T is short: a few whole-array steps
        still &= same[:, t]
        run += still
    return run


def _rounds(slots: np.ndarray) -> list[np.ndarray]:
    """The batch's windows by round: round r holds each device's r-th window (ascending window indices).
    ``slots``: each window's device as a number (its window-store slot)."""
    rank = ranks(slots)
    return np.split(np.argsort(rank, kind="stable"), np.cumsum(np.bincount(rank))[:-1])


def _row_any(a: np.ndarray) -> np.ndarray:
    """Whether each row of an (n, k) boolean array has a True; all False when k is 0."""
    return functools.reduce(np.logical_or, a.T, np.zeros(len(a), bool))


def record_refit(detector: Detector, result: RefitResult) -> None:
    """Install a kept candidate in ``detector`` (or count a discarded one) and log the outcome."""
    if result.bundle is None or result.scorer is None:
        detector.refits["discarded"] += 1
        log.info(
            "refit of %s discarded: held-out median score %.3f vs %.3f serving", detector.model_version,
            result.candidate_median, result.serving_median,
        )  # fmt: skip
        return
    previous = detector.model_version
    detector.use_model(result.bundle, result.scorer)
    detector.refits["kept"] += 1
    if result.fresh_scaler:
        # A model trained afresh on a new scaler measures in other units: the device lines' history (verdicts
        # of the old model) says nothing of the new one's, and kept, it could hold a line a thousand times too
        # high for hundreds of windows. The devices learn their lines anew, as after a long episode.
        detector.model_lines.relearn_all()
        detector.transients.forget_all()
        detector.line_basis = detector.model_version
    log.info(
        "refit %s -> %s kept (held-out median score %.3f vs %.3f, %s, %.1fs)", previous, detector.model_version,
        result.candidate_median, result.serving_median, "fresh scaler" if result.fresh_scaler else "fine-tuned", result.seconds,
    )  # fmt: skip
