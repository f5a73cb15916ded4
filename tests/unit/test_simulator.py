"""The simulator: existing scenarios keep their exact readings; benign events change what they say, unlabelled."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from producers.scenarios import FEATURES, SEED_SENSORS, Benign, BenignKind, FailureKind, Scenario, random_failures
from producers.simulator import FleetSimulator, _weekend

START_MS = 1_767_225_600_000  # Thursday 2026-01-01 00:00 UTC
TEMP, VIB, RPM, AMPS = range(4)
SD = np.array([SEED_SENSORS[f][1] for f in FEATURES])


def _run(**fields: object) -> tuple[FleetSimulator, np.ndarray]:
    sim = FleetSimulator(Scenario(**fields), START_MS)  # type: ignore[arg-type]
    return sim, sim.series()


def test_a_scenario_without_benign_events_gives_the_readings_it_always_gave() -> None:
    # Recorded before benign events existed: every failure kind, seeded. A change here changes every
    # published simulator figure.
    plan = Scenario(devices=6, duration_s=2000, seed=3, rate_hz=2.0)
    plan = plan.model_copy(update={"failures": random_failures(plan, 6, list(FailureKind))})
    series = FleetSimulator(plan, 1_700_000_000_000).series()
    assert hashlib.sha256(np.ascontiguousarray(series).tobytes()).hexdigest()[:16] == "3429f4225819078a"


def test_benign_events_touch_only_their_device_and_time_and_are_not_labelled() -> None:
    plain = _run(devices=3, duration_s=600, seed=5)[1]
    event = Benign(device=1, kind=BenignKind.recalibration, start_s=300, magnitude=4.0, sensor="motor_rpm")
    sim, shifted = _run(devices=3, duration_s=600, seed=5, benign=[event])
    assert sim.labels() == []
    diff = shifted - plain
    assert not diff[:300].any() and not diff[:, [0, 2]].any()
    np.testing.assert_allclose(diff[300:, 1, RPM], 4.0 * SD[RPM])
    assert not np.delete(diff[300:, 1], RPM, axis=1).any()
    (span,) = sim.benign_spans()
    assert (span.device_id, span.kind, span.start) == ("press-01", "recalibration", START_MS + 300_000)


def test_a_regime_raises_current_lowers_speed_and_warms_the_machine() -> None:
    plain = _run(devices=2, duration_s=3000, seed=5)[1]
    regime = Benign(device=0, kind=BenignKind.regime, start_s=1000, duration_s=1000, magnitude=3.0)
    shifted = _run(devices=2, duration_s=3000, seed=5, benign=[regime])[1]
    diff = (shifted - plain)[:, 0] / SD
    held = slice(1700, 2000)  # after the ten-minute ramp and the temperature's lag
    assert diff[held, AMPS].mean() == pytest.approx(0.6 * 3.0, rel=1e-6)
    assert diff[held, RPM].mean() == pytest.approx(-0.3 * 3.0, rel=1e-6)
    assert diff[held, TEMP].mean() == pytest.approx(0.8 * 3.0, rel=1e-3)
    assert np.abs(diff[2700:]).max() < 1e-6 + 0.8 * 3.0 * 0.9**100  # back to normal after the ramp down
    assert not (shifted - plain)[:, 1].any()


def test_a_sensor_drifts_slowly_until_maintenance_resets_it() -> None:
    events = [
        Benign(device=0, kind=BenignKind.sensor_drift, start_s=100, duration_s=400, magnitude=4.0, sensor="temperature"),
        Benign(device=0, kind=BenignKind.maintenance, start_s=800, magnitude=-2.0),
    ]
    plain = _run(devices=1, duration_s=1000, seed=2)[1]
    sim, drifted = _run(devices=1, duration_s=1000, seed=2, benign=events)
    diff = (drifted - plain)[:, 0] / SD
    assert diff[300, TEMP] == pytest.approx(2.0) and diff[700, TEMP] == pytest.approx(4.0)
    assert not diff[:800, VIB].any()
    # After maintenance: the drift is gone (its random walk restarts at zero), the bearing runs quieter.
    assert abs(diff[850:, TEMP]).max() < 1.0
    assert diff[850:, VIB].mean() == pytest.approx(-2.0, abs=0.5)
    assert sim.labels() == []


def test_a_flat_stretch_holds_one_value() -> None:
    flat = Benign(device=0, kind=BenignKind.flat, start_s=50, duration_s=100, sensor="motor_amps", magnitude=0.0)
    held = Benign(device=1, kind=BenignKind.flat, start_s=50, duration_s=100)
    values = _run(devices=2, duration_s=300, seed=1, benign=[flat, held])[1]
    assert (values[50:150, 0, AMPS] == 0.0).all() and values[150, 0, AMPS] != 0.0
    assert len(set(values[50:150, 1, VIB].tolist())) == 1 and values[49, 1, VIB] != values[50, 1, VIB]


def test_weekends_lower_every_machines_load() -> None:
    assert _weekend(START_MS / 1000 + 36 * 3600) == 0.0  # Friday noon
    assert _weekend(START_MS / 1000 + 3.5 * 86400) == 1.0  # Sunday noon
    hourly = dict(devices=2, interval_s=3600, duration_s=7 * 86400, seed=4)
    plain = _run(**hourly)[1]
    quiet = _run(**hourly, weekend_load=2.0)[1]
    diff = (quiet - plain)[:, :, AMPS] / SD[AMPS]
    assert np.allclose(diff[12:24], 0.0) and np.allclose(diff[72:84], -1.2)  # Thursday vs Sunday


def test_slow_sampling_by_interval() -> None:
    sim, values = _run(devices=1, interval_s=300, duration_s=86400)
    assert sim.scenario.rate_hz == pytest.approx(1 / 300) and len(values) == 288
    stamps = [ts for ts, _ in sim.ticks()]
    assert set(np.diff(stamps).tolist()) == {300_000}
    with pytest.raises(ValueError, match="not both"):
        Scenario(interval_s=60, rate_hz=1.0)


def test_benign_events_are_checked_like_failures() -> None:
    with pytest.raises(ValueError, match="fleet has 2 devices"):
        Scenario(devices=2, benign=[Benign(device=5, kind=BenignKind.regime, start_s=0)])
    with pytest.raises(ValueError, match="needs duration_s"):
        Benign(kind=BenignKind.flat, start_s=0)


def test_weekends_are_benign_spans() -> None:
    sim = FleetSimulator(Scenario(devices=1, interval_s=3600, duration_s=7 * 86400, weekend_load=1.0), START_MS)
    (weekend,) = sim.benign_spans()
    # Thursday start: lighter from Friday 23:00 (ramping in) to Monday 01:00.
    assert weekend.kind == "weekend" and (weekend.start - START_MS) / 3_600_000 == 47
    assert (weekend.end - START_MS) / 3_600_000 == 97


def test_false_episodes_are_blamed_on_the_benign_event_they_follow() -> None:
    from producers.simulator import BenignSpan
    from stream_app.lab.evaluate import Trace, benign_false_episodes

    ts = START_MS + np.arange(200, dtype=np.int64) * 60_000
    truth = np.zeros(200, bool)
    truth[150:160] = True
    is_open = np.zeros(200, bool)
    for opens in (20, 100, 152):  # during the regime, long after everything, at the failure
        is_open[opens : opens + 5] = True
    trace = Trace("press-00", ts, truth, is_open, is_open, np.zeros(200, np.float32))
    spans = [
        BenignSpan("press-00", "regime", int(ts[10]), int(ts[30])),
        BenignSpan("press-00", "recalibration", int(ts[10]), int(ts[10])),  # a step: blamed for an hour after
        BenignSpan("press-01", "flat", int(ts[0]), int(ts[199])),  # another device's
    ]
    assert benign_false_episodes([trace], spans, grace=16) == {"recalibration": 1, "regime": 1}
