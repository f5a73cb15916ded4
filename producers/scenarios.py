"""What to simulate: the fleet, its normal behaviour, and the failures to inject."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

# The seed's production-floor sensors: Gaussian normal behaviour (mean, sd).
SEED_SENSORS: dict[str, tuple[float, float]] = {
    "temperature": (0.06, 0.002),
    "vibration": (0.075, 0.002),
    "motor_rpm": (0.045, 0.001),
    "motor_amps": (0.084, 0.002),
}
FEATURES: list[str] = list(SEED_SENSORS)


class FailureKind(str, Enum):
    overheating = "overheating"  # temperature ramps up, then holds
    bearing_wear = "bearing_wear"  # vibration ramps up
    power_surge = "power_surge"  # motor current steps up
    rpm_drop = "rpm_drop"  # motor speed steps down
    stuck_sensor = "stuck_sensor"  # one sensor repeats its last value
    spikes = "spikes"  # isolated large spikes on one sensor


# Default sensor and magnitude range of each kind (the seed's failure shifts).
FAILURE_EFFECTS: dict[FailureKind, tuple[str, float, float]] = {
    FailureKind.overheating: ("temperature", 0.005, 0.01),
    FailureKind.bearing_wear: ("vibration", 0.003, 0.007),
    FailureKind.power_surge: ("motor_amps", 0.005, 0.01),
    FailureKind.rpm_drop: ("motor_rpm", -0.005, -0.002),
    FailureKind.stuck_sensor: ("temperature", 0.0, 0.0),
    FailureKind.spikes: ("vibration", 0.012, 0.02),
}


class BenignKind(str, Enum):
    """Normal change a real machine goes through: never labelled anomalous, must not alert."""

    regime = "regime"  # the machine runs at another load level: current up, speed down, temperature follows
    maintenance = "maintenance"  # drift and slow sensor drift reset; the serviced bearing runs quieter
    recalibration = "recalibration"  # one sensor's reading steps and stays
    sensor_drift = "sensor_drift"  # one sensor drifts slowly (linearly over the event), then holds
    flat = "flat"  # one sensor sits at one value for a while (an idle axis, a held set-point)


# Default sensor and magnitude of each benign kind. Magnitudes are in the sensor's sd (the load's,
# for a regime), except `flat`'s, which is the value itself (default: the reading when it starts).
BENIGN_DEFAULTS: dict[BenignKind, tuple[str | None, float | None]] = {
    BenignKind.regime: (None, 2.5),
    BenignKind.maintenance: ("vibration", -1.5),
    BenignKind.recalibration: ("temperature", 2.0),
    BenignKind.sensor_drift: ("temperature", 3.0),
    BenignKind.flat: ("vibration", None),
}


class Benign(BaseModel):
    """A benign change on one device (or every device when ``device`` is None), from ``start_s``.

    ``duration_s``: how long a regime or a flat stretch lasts (a regime with 0 lasts to the end),
    or how long a sensor drift takes to reach its magnitude; maintenance and recalibration are steps.
    """

    device: int | None = Field(None, ge=0, description="device index; None: every device")
    kind: BenignKind
    start_s: float = Field(ge=0)
    duration_s: float = Field(0.0, ge=0)
    sensor: str | None = None
    magnitude: float | None = None

    @model_validator(mode="after")
    def _needs_a_duration(self) -> Benign:
        if self.kind in (BenignKind.sensor_drift, BenignKind.flat) and self.duration_s <= 0:
            raise ValueError(f"a {self.kind.value} event needs duration_s > 0")
        return self


class Failure(BaseModel):
    device: int = Field(ge=0, description="device index in the fleet")
    kind: FailureKind
    start_s: float = Field(ge=0, description="seconds after the simulation starts")
    duration_s: float = Field(gt=0)
    sensor: str | None = None
    magnitude: float | None = None


class Scenario(BaseModel):
    devices: int = Field(20, ge=1, le=1_000_000)
    device_prefix: str = "press"
    rate_hz: float = Field(1.0, gt=0, le=1000, description="readings per second per device")
    duration_s: float = Field(600.0, gt=0)
    seed: int = 7
    failures: list[Failure] = Field(default_factory=list)
    # Benign non-stationarity, never labelled: see ``Benign``.
    benign: list[Benign] = Field(default_factory=list)
    # Weekly seasonality: on Saturdays and Sundays (UTC) every machine's load is this much lower
    # (in the load's sd), with 4-hour transitions around midnight.
    weekend_load: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _interval(cls, data: object) -> object:
        # `interval_s: 300` reads better in a scenario file than `rate_hz: 0.00333...`.
        if isinstance(data, dict) and "interval_s" in data:
            data = dict(data)
            interval = data.pop("interval_s")
            if "rate_hz" in data:
                raise ValueError("give rate_hz or interval_s, not both")
            if not isinstance(interval, (int, float)) or interval <= 0:
                raise ValueError("interval_s must be a positive number of seconds")
            data["rate_hz"] = 1.0 / interval
        return data

    @model_validator(mode="after")
    def _failures_fit(self) -> Scenario:
        for event in [*self.failures, *self.benign]:
            what = "failure" if isinstance(event, Failure) else f"{event.kind.value} event"
            if event.device is not None and event.device >= self.devices:
                raise ValueError(f"{what} on device {event.device}, but the fleet has {self.devices} devices")
            if event.sensor is not None and event.sensor not in SEED_SENSORS:
                raise ValueError(f"unknown sensor {event.sensor!r}; known: {', '.join(FEATURES)}")
        return self

    def device_id(self, index: int) -> str:
        width = max(2, len(str(self.devices - 1)))
        return f"{self.device_prefix}-{index:0{width}d}"

    @property
    def ticks(self) -> int:
        return int(self.duration_s * self.rate_hz)


def random_failures(scenario: Scenario, count: int, kinds: list[FailureKind] | None = None) -> list[Failure]:
    """``count`` failures on distinct devices, kinds cycling, placed in the middle of the run."""
    if count > scenario.devices:
        raise ValueError(f"{count} failures need at least {count} devices")
    rng = np.random.default_rng(scenario.seed + 1)
    kinds = kinds or [FailureKind.overheating, FailureKind.bearing_wear, FailureKind.power_surge, FailureKind.rpm_drop]
    devices = rng.choice(scenario.devices, size=count, replace=False)
    failures = []
    for i, device in enumerate(sorted(devices.tolist())):
        duration = scenario.duration_s * rng.uniform(0.15, 0.25)
        start = scenario.duration_s * rng.uniform(0.2, 0.55)
        failures.append(Failure(device=device, kind=kinds[i % len(kinds)], start_s=start, duration_s=duration))
    return failures


def load_scenario(path: Path) -> Scenario:
    """A scenario from a YAML or JSON file (same fields as ``Scenario``)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read scenario {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"scenario {path} is not valid YAML/JSON") from exc
    try:
        return Scenario.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "scenario"
        raise ValueError(f"scenario {path}: {where}: {first['msg']}") from exc
