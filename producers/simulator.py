"""A simulated fleet: seeded, deterministic sensor readings with injected failures.

Normal behaviour starts from the seed's Gaussians and adds the structure real machines have:
a per-device offset, a slow mean-reverting drift, a daily cycle, and a shared load factor that
moves motor current first and temperature after it. Failures shift or freeze one sensor.
Benign events (``Scenario.benign``, ``weekend_load``) add the normal change of a real floor: load
regimes, maintenance, recalibration, slow sensor drift, flat stretches and quiet weekends. They draw
nothing from the random generator, so a scenario without them gives the same readings as before.
Everything is vectorised across devices: one numpy step per tick.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from stream_app.contracts import FailureLabel

from .scenarios import BENIGN_DEFAULTS, FAILURE_EFFECTS, FEATURES, SEED_SENSORS, Benign, BenignKind, Failure, FailureKind, Scenario

_MEAN = np.array([SEED_SENSORS[f][0] for f in FEATURES])
_SD = np.array([SEED_SENSORS[f][1] for f in FEATURES])
_TEMP, _VIB, _RPM, _AMPS = range(4)
_DAY_S = 86_400.0
_WEEK_S = 7 * _DAY_S
_DRIFT_TAU_S = 1_800.0
_REGIME_RAMP_S = 600.0  # a machine takes ten minutes to move to another load level
_WEEKEND_RAMP_H = 4.0


@dataclass(frozen=True, slots=True)
class _ActiveBenign:
    devices: tuple[int, ...]
    kind: BenignKind
    sensor: int
    magnitude: float | None
    start_tick: int
    end_tick: int


@dataclass(frozen=True, slots=True)
class BenignSpan:
    """Where a benign event acts (epoch ms, inclusive): an alert there is a false alert."""

    device_id: str
    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _ActiveFailure:
    device: int
    kind: FailureKind
    sensor: int
    magnitude: float
    start_tick: int
    end_tick: int


class FleetSimulator:
    def __init__(self, scenario: Scenario, start_ms: int) -> None:
        self.scenario = scenario
        self.start_ms = start_ms
        self.period_ms = 1000.0 / scenario.rate_hz
        self.device_ids = [scenario.device_id(i) for i in range(scenario.devices)]
        self._rng = np.random.default_rng(scenario.seed)
        n = scenario.devices
        self._offset = self._rng.normal(0, 0.1, (n, 4)) * _SD
        self._phase = self._rng.uniform(0, 2 * math.pi, n)
        self._drift = self._rng.normal(0, 0.15, (n, 4)) * _SD
        self._load = np.zeros(n)
        self._heat = np.zeros(n)
        self._failures = [self._activate(f) for f in scenario.failures]
        self._stuck: dict[int, float] = {}
        self._benign = [self._benign_event(b) for b in scenario.benign]
        self._shift = np.zeros((n, 4))  # recalibration and maintenance steps so far
        self._flat: dict[tuple[int, int], float] = {}
        self._serviced: dict[int, list[int]] = {}  # device -> maintenance ticks
        for b in self._benign:
            if b.kind is BenignKind.maintenance:
                for d in b.devices:
                    self._serviced.setdefault(d, []).append(b.start_tick)
        self._load_changes = scenario.weekend_load != 0 or any(b.kind is BenignKind.regime for b in self._benign)

    def labels(self) -> list[FailureLabel]:
        """Ground truth: one label per injected failure, in epoch milliseconds."""
        return [
            FailureLabel(
                device_id=self.device_ids[f.device],
                kind=f.kind.value,
                start=self._tick_ms(f.start_tick),
                end=self._tick_ms(f.end_tick - 1),
                sensor=FEATURES[f.sensor],
                magnitude=f.magnitude,
            )
            for f in self._failures
        ]

    def benign_spans(self) -> list[BenignSpan]:
        """Where each benign event acts, per device (steps: their first tick), and the quiet weekends; not anomalies."""
        spans = [
            BenignSpan(self.device_ids[d], b.kind.value, self._tick_ms(b.start_tick), self._tick_ms(b.end_tick - 1))
            for b in self._benign
            for d in b.devices
        ]
        if self.scenario.weekend_load:
            dt = 1.0 / self.scenario.rate_hz
            lighter = np.array([_weekend(self.start_ms / 1000.0 + k * dt) > 0 for k in range(self.scenario.ticks)])
            for first, last in _runs(lighter):
                spans += [BenignSpan(d, "weekend", self._tick_ms(first), self._tick_ms(last)) for d in self.device_ids]
        return spans

    def ticks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (timestamp ms, values of every device (devices, 4)) for each tick."""
        for tick in range(self.scenario.ticks):
            yield self._tick_ms(tick), self._step(tick)

    def series(self) -> np.ndarray:
        """The whole run as one array (ticks, devices, 4); for training and evaluation."""
        return np.stack([values for _, values in self.ticks()])

    def _tick_ms(self, tick: int) -> int:
        return self.start_ms + int(round(tick * self.period_ms))

    def _step(self, tick: int) -> np.ndarray:
        rng, n = self._rng, self.scenario.devices
        dt = 1.0 / self.scenario.rate_hz
        t_s = self.start_ms / 1000.0 + tick * dt

        keep = math.exp(-dt / _DRIFT_TAU_S)
        self._drift = self._drift * keep + rng.normal(0, 0.15 * math.sqrt(1 - keep**2), (n, 4)) * _SD
        self._load = 0.7 * self._load + rng.normal(0, math.sqrt(1 - 0.49), n)
        load = self._load + self._load_level(tick, t_s) if self._load_changes else self._load
        # Temperature follows the load with a lag: an exponential average of it.
        self._heat = 0.9 * self._heat + 0.1 * load

        values = _MEAN + self._offset + self._drift + rng.normal(0, 0.6, (n, 4)) * _SD
        daily = np.sin(2 * math.pi * t_s / _DAY_S + self._phase)
        values[:, _TEMP] += (0.3 * daily + 0.8 * self._heat) * _SD[_TEMP]
        values[:, _AMPS] += (0.2 * daily + 0.6 * load) * _SD[_AMPS]
        values[:, _RPM] -= 0.3 * load * _SD[_RPM]
        if self._benign:
            self._apply_benign(values, tick)

        for failure in self._failures:
            if failure.start_tick <= tick < failure.end_tick:
                self._inject(values, failure, tick)
        return values

    def _load_level(self, tick: int, t_s: float) -> np.ndarray:
        """Each device's load baseline now: its regime, less the weekend's drop."""
        level = np.zeros(self.scenario.devices)
        ramp = max(1.0, _REGIME_RAMP_S * self.scenario.rate_hz)
        for b in self._benign:
            if b.kind is BenignKind.regime and b.start_tick <= tick < b.end_tick + ramp:
                # Up over the ramp from its start, back down over the ramp after its end.
                share = min(1.0, (tick - b.start_tick + 1) / ramp, max(0.0, 1.0 - (tick - b.end_tick + 1) / ramp))
                level[list(b.devices)] += share * (b.magnitude or 0.0)
        if self.scenario.weekend_load:
            level -= self.scenario.weekend_load * _weekend(t_s)
        return level

    def _apply_benign(self, values: np.ndarray, tick: int) -> None:
        for b in self._benign:
            if b.kind is BenignKind.maintenance and tick == b.start_tick:
                for d in b.devices:
                    self._drift[d] = 0.0
                    self._shift[d, b.sensor] += (b.magnitude or 0.0) * _SD[b.sensor]
            elif b.kind is BenignKind.recalibration and tick == b.start_tick:
                for d in b.devices:
                    self._shift[d, b.sensor] += (b.magnitude or 0.0) * _SD[b.sensor]
        values += self._shift
        for b in self._benign:
            if b.kind is BenignKind.sensor_drift and tick >= b.start_tick:
                progress = min(1.0, (tick - b.start_tick) / max(1, b.end_tick - b.start_tick))
                for d in b.devices:
                    if not any(b.start_tick < m <= tick for m in self._serviced.get(d, ())):
                        values[d, b.sensor] += progress * (b.magnitude or 0.0) * _SD[b.sensor]
            elif b.kind is BenignKind.flat and b.start_tick <= tick < b.end_tick:
                for d in b.devices:
                    held = b.magnitude if b.magnitude is not None else float(values[d, b.sensor])
                    values[d, b.sensor] = self._flat.setdefault((id(b), d), held)

    def _inject(self, values: np.ndarray, f: _ActiveFailure, tick: int) -> None:
        progress = (tick - f.start_tick) / max(1, f.end_tick - f.start_tick)
        row, col = f.device, f.sensor
        if f.kind is FailureKind.overheating:
            values[row, col] += f.magnitude * min(1.0, progress / 0.3)
        elif f.kind is FailureKind.bearing_wear:
            # A worn bearing vibrates harder and less regularly.
            level = f.magnitude * min(1.0, progress / 0.5)
            values[row, col] += level + self._rng.normal(0, 0.5 * level)
        elif f.kind in (FailureKind.power_surge, FailureKind.rpm_drop):
            values[row, col] += f.magnitude
        elif f.kind is FailureKind.stuck_sensor:
            values[row, col] = self._stuck.setdefault(id(f), float(values[row, col]))
        elif f.kind is FailureKind.spikes and self._rng.random() < 0.1:
            values[row, col] += f.magnitude * self._rng.choice([-1.0, 1.0])

    def _benign_event(self, event: Benign) -> _ActiveBenign:
        sensor, magnitude = BENIGN_DEFAULTS[event.kind]
        sensor = event.sensor or sensor or FEATURES[0]
        magnitude = event.magnitude if event.magnitude is not None else magnitude
        start = int(event.start_s * self.scenario.rate_hz)
        length = int(event.duration_s * self.scenario.rate_hz)
        if event.kind is BenignKind.regime and length == 0:
            length = self.scenario.ticks
        end = min(self.scenario.ticks, start + max(1, length))
        devices = tuple(range(self.scenario.devices)) if event.device is None else (event.device,)
        return _ActiveBenign(devices, event.kind, FEATURES.index(sensor), magnitude, start, end)

    def _activate(self, failure: Failure) -> _ActiveFailure:
        sensor, low, high = FAILURE_EFFECTS[failure.kind]
        sensor = failure.sensor or sensor
        magnitude = failure.magnitude if failure.magnitude is not None else float(self._rng.uniform(low, high))
        start = int(failure.start_s * self.scenario.rate_hz)
        end = min(self.scenario.ticks, start + max(1, int(failure.duration_s * self.scenario.rate_hz)))
        return _ActiveFailure(failure.device, failure.kind, FEATURES.index(sensor), magnitude, start, end)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def _weekend(t_s: float) -> float:
    """1.0 from Saturday to Monday 00:00 UTC, 0.0 on weekdays, ramping over 4 hours around midnight."""
    hour = (t_s / 3600.0 + 3 * 24) % (7 * 24)  # hours since Monday 00:00 (1970-01-01 was a Thursday)
    from_sunday = abs(hour - 6 * 24)
    distance = min(from_sunday, 7 * 24 - from_sunday)  # hours from Sunday 00:00, the weekend's middle
    return float(min(1.0, max(0.0, (24 - distance) / _WEEKEND_RAMP_H + 0.5)))


def normal_training_series(devices: int, samples: int, *, rate_hz: float = 1.0, seed: int = 1) -> list[np.ndarray]:
    """Normal data for training: one (samples, 4) series per device, at random times of day."""
    scenario = Scenario(devices=devices, rate_hz=rate_hz, duration_s=samples / rate_hz, seed=seed)
    rng = np.random.default_rng(seed)
    start_ms = int(1_767_225_600_000 + rng.uniform(0, _DAY_S) * 1000)  # 2026-01-01 plus a random time of day
    series = FleetSimulator(scenario, start_ms).series()  # (ticks, devices, 4)
    return [series[:, d, :].astype(np.float32) for d in range(devices)]
