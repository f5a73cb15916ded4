"""The drift watch on a simulated fleet: a shift in one feature's normal is reported within five
simulated minutes, on that feature only; a stable fleet gives no event over a simulated day."""

from __future__ import annotations

import numpy as np
import pytest

from producers.scenarios import FEATURES, Scenario
from producers.simulator import FleetSimulator, normal_training_series
from stream_app.worker.drift import DriftLimits, DriftWatch, ks, psi, reference_from
from stream_app.models.store import DriftReference

START_MS = 1_767_225_600_000  # midnight: minute boundaries fall on ticks
TEMP = FEATURES.index("temperature")


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    train = np.concatenate(normal_training_series(30, 1200, seed=1))
    ratios = np.abs(np.random.default_rng(0).normal(0.3, 0.1, 5000))  # normal windows' distance to the line
    return reference_from(train, FEATURES, ratios, over_line=0.0)


def _run(reference: DriftReference, seconds: int, shift_at_s: int | None = None, shift: float = 0.0, wandering: tuple[str, ...] = ()):
    """Feed a 20-device fleet at 1 Hz in 30-second batches; yield (simulated second, events)."""
    sim = FleetSimulator(Scenario(devices=20, duration_s=seconds, seed=7), START_MS)
    watch = DriftWatch("default", "v0001", FEATURES, reference, DriftLimits(), wandering=wandering)
    series = sim.series()
    if shift_at_s is not None:
        series[shift_at_s:, :, TEMP] += shift
    rng = np.random.default_rng(1)
    for second in range(0, seconds, 30):
        chunk = series[second : second + 30]
        ticks = np.arange(second, second + len(chunk))
        values = chunk.reshape(-1, len(FEATURES)).astype(np.float32)
        ts = np.repeat(START_MS + ticks * 1000, 20)
        ratios = np.abs(rng.normal(0.3, 0.1, len(values)))
        events = watch.observe(values, ts, ratios=ratios, devices=[f"d{i}" for i in range(20)])
        yield second + len(chunk), events, watch


def test_psi_and_ks_of_identical_and_shifted_shares() -> None:
    expected = np.full(10, 0.1)
    assert psi(np.full(10, 50.0), expected) == pytest.approx(0.0)
    assert ks(np.full(10, 50.0), expected) == pytest.approx(0.0)
    shifted = np.array([0, 0, 0, 0, 0, 100, 100, 100, 100, 100], float)
    assert psi(shifted, expected) > 1.0 and ks(shifted, expected) == pytest.approx(0.5)


def test_a_shift_in_one_feature_is_reported_within_five_minutes_on_that_feature_only(reference: DriftReference) -> None:
    shift_at = 3600
    sd = 0.0015  # the training readings' spread of temperature
    found = []
    for second, events, _ in _run(reference, shift_at + 900, shift_at_s=shift_at, shift=sd):
        if events:
            assert second > shift_at, f"event before the shift: {events}"
            found += [(second, e) for e in events]
    assert found, "no drift event"
    first_second, first = found[0]
    assert first_second - shift_at <= 5 * 60, f"first event {first_second - shift_at}s after the shift"
    assert {e.feature for _, e in found} == {"temperature"}
    assert first.kind == "drift" and first.group == "default" and first.figure in ("psi", "ks")
    assert first.limit == DriftLimits().__getattribute__(first.figure)
    assert "temperature" in first.message and "over its limit" in first.message


def test_a_sensor_whose_level_wanders_by_design_is_not_watched_for_its_level(reference: DriftReference) -> None:
    # The same shift as above, on a model that reads temperature centred: no event, and no figure for it.
    found, watch = [], None
    for _, events, watch in _run(reference, 3600 + 900, shift_at_s=3600, shift=0.0015, wandering=("temperature",)):
        found += events
    assert found == [] and watch is not None
    assert not any(key.endswith(":temperature") for key in watch.figures)
    assert "psi:vibration" in watch.figures  # the others still are


def test_a_stable_fleet_gives_no_event_over_a_simulated_day(reference: DriftReference) -> None:
    last = None
    for _, events, watch in _run(reference, 86_400):
        assert events == [], events
        last = watch
    assert last is not None
    # Every watched figure was computed, and stayed under its limit.
    assert {k.split(":")[0] for k in last.figures} == {"psi", "ks", "score_psi", "over_line_ratio", "alerts_per_device_day"}


def test_alert_rate_over_the_line_and_scores_are_watched_too(reference: DriftReference) -> None:
    watch = DriftWatch("pumps", "pumps/v0002", FEATURES, reference, DriftLimits(min_device_days=0.001))
    rng = np.random.default_rng(2)
    events = []
    for minute in range(8):
        ts = np.full(1200, START_MS + minute * 60_000)
        values = rng.normal(0.06, 0.0015, (1200, 4)).astype(np.float32)
        ratios = np.abs(rng.normal(1.5, 0.3, 1200))  # scores far above calibration: half the windows over the line
        events += watch.observe(values, ts, ratios=ratios, opened=3, devices=[f"p{i}" for i in range(20)])
    figures = {e.figure for e in events}
    assert {"score_psi", "over_line_ratio", "alerts_per_device_day"} <= figures
    assert all(e.group == "pumps" and e.model_version == "pumps/v0002" for e in events)
    # Each crossing is reported once, not once a minute.
    assert len([e for e in events if e.figure == "score_psi"]) == 1


def test_fleet_drift_follows_the_served_model_and_is_off_for_old_cards(reference: DriftReference, caplog: pytest.LogCaptureFixture) -> None:
    from stream_app.pipeline.group_detector import GroupDetector

    from stream_app.contracts import Reading
    from stream_app.pipeline.detector import Detector
    from stream_app.worker.drift import FleetDrift
    from tests.support.builders import bundle, detector as build_detector

    def detector(version: str, with_reference: bool) -> Detector:
        fields = {"version": version, "drift_reference": reference if with_reference else None}
        return build_detector(bundle(FEATURES, card_fields=fields))

    fleet = GroupDetector.single(detector("v0001", with_reference=False))
    drift = FleetDrift(fleet, DriftLimits(sample_every=1, min_samples=10))
    rng = np.random.default_rng(0)

    def batch(minute: int) -> list[Reading]:
        return [Reading(device_id=f"d{i}", ts=START_MS + minute * 60_000 + i, values=dict(zip(FEATURES, map(float, rng.normal(0.06, 0.001, 4)))))
                for i in range(20)]  # fmt: skip

    for minute in range(3):
        readings = batch(minute)
        assert drift.observe(readings, fleet.process(readings, now_ms=START_MS + 10**9)).evaluated == []
    assert caplog.text.count("drift watch off for model v0001") == 1

    fleet.install("default", detector("v0002", with_reference=True))
    evaluated = []
    for minute in range(3, 6):
        readings = batch(minute)
        evaluated += drift.observe(readings, fleet.process(readings, now_ms=START_MS + 10**9)).evaluated
    assert evaluated and evaluated[-1].model_version == "v0002" and "psi:temperature" in evaluated[-1].figures
