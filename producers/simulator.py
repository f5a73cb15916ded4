"""A simulated fleet: seeded, deterministic sensor readings with injected failures.

Normal behaviour starts from the seed's Gaussians and adds the structure real machines have:
a per-device offset, a slow mean-reverting drift, a daily cycle, and a shared load factor that
moves motor current first and temperature after it. Failures shift or freeze one sensor.
Everything is vectorised across devices: one numpy step per tick.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from stream_app.contracts import FailureLabel

from .scenarios import FAILURE_EFFECTS, FEATURES, SEED_SENSORS, Failure, FailureKind, Scenario

_MEAN = np.array([SEED_SENSORS[f][0] for f in FEATURES])
_SD = np.array([SEED_SENSORS[f][1] for f in FEATURES])
_TEMP, _VIB, _RPM, _AMPS = range(4)
_DAY_S = 86_400.0
_DRIFT_TAU_S = 1_800.0


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
        # Temperature follows the load with a lag: an exponential average of it.
        self._heat = 0.9 * self._heat + 0.1 * self._load

        values = _MEAN + self._offset + self._drift + rng.normal(0, 0.6, (n, 4)) * _SD
        daily = np.sin(2 * math.pi * t_s / _DAY_S + self._phase)
        values[:, _TEMP] += (0.3 * daily + 0.8 * self._heat) * _SD[_TEMP]
        values[:, _AMPS] += (0.2 * daily + 0.6 * self._load) * _SD[_AMPS]
        values[:, _RPM] -= 0.3 * self._load * _SD[_RPM]

        for failure in self._failures:
            if failure.start_tick <= tick < failure.end_tick:
                self._inject(values, failure, tick)
        return values

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

    def _activate(self, failure: Failure) -> _ActiveFailure:
        sensor, low, high = FAILURE_EFFECTS[failure.kind]
        sensor = failure.sensor or sensor
        magnitude = failure.magnitude if failure.magnitude is not None else float(self._rng.uniform(low, high))
        start = int(failure.start_s * self.scenario.rate_hz)
        end = min(self.scenario.ticks, start + max(1, int(failure.duration_s * self.scenario.rate_hz)))
        return _ActiveFailure(failure.device, failure.kind, FEATURES.index(sensor), magnitude, start, end)


def normal_training_series(devices: int, samples: int, *, rate_hz: float = 1.0, seed: int = 1) -> list[np.ndarray]:
    """Normal data for training: one (samples, 4) series per device, at random times of day."""
    scenario = Scenario(devices=devices, rate_hz=rate_hz, duration_s=samples / rate_hz, seed=seed)
    rng = np.random.default_rng(seed)
    start_ms = int(1_767_225_600_000 + rng.uniform(0, _DAY_S) * 1000)  # 2026-01-01 plus a random time of day
    series = FleetSimulator(scenario, start_ms).series()  # (ticks, devices, 4)
    return [series[:, d, :].astype(np.float32) for d in range(devices)]
