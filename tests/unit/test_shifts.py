"""A sensor's window median against its recent ones: a step the model reconstructs is found, spikes and slow
wandering are not."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.contracts import Reading
from stream_app.pipeline import adaptation
from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.shifts import LevelShifts, ShiftConfig, window_quartiles
from tests.support.builders import T0, MaxScorer, bundle, openings
from tests.support.builders import detector as build_detector

WINDOW = 5


def feed(shifts: LevelShifts, xs: np.ndarray, *, slot: int = 0, quiet: bool = True, length: int = WINDOW) -> np.ndarray:
    """Every window of the series ``xs`` (readings, F) in order, one a batch; each window's ratios, before it is seen."""
    out = []
    for end in range(length, len(xs) + 1):
        window = xs[end - length : end][None].astype(np.float32)
        slots = np.array([slot])
        out.append(shifts.ratios(slots, shifts.levels(window))[0])
        shifts.observe(slots, window, np.array([T0 + end * 60_000]), np.array([quiet and out[-1].max() <= 1.0]))
    return np.array(out)


def noisy(n: int, level: float = 10.0, sd: float = 1.0, seed: int = 1) -> np.ndarray:
    return (level + sd * np.random.default_rng(seed).standard_normal(n))[:, None]


def test_a_step_of_a_few_noise_widths_crosses_the_line_and_the_noise_does_not() -> None:
    xs = np.concatenate([noisy(600), noisy(30, level=16.0, seed=2)])
    r = feed(LevelShifts(ShiftConfig(), WINDOW, 1), xs)[:, 0]
    assert r[: 600 - WINDOW].max() < 1.0
    assert r[-20:].min() > 1.5


def test_spikes_shorter_than_half_a_window_move_no_median() -> None:
    xs = noisy(900)
    xs[300::40] = 500.0  # a lone spike every 40 readings
    xs[600::40] = 500.0
    xs[601::40] = 500.0  # and pairs
    r = feed(LevelShifts(ShiftConfig(), WINDOW, 1), xs)[:, 0]
    assert r.max() < 1.0


def test_bursts_of_half_a_window_stay_inside_and_a_surge_does_not() -> None:
    """A rise is judged by the lower quartile, a fall by the upper one: bursts and dips of 6 readings in 12 (a
    median would sit between the burst and the level) stay inside; a surge that fills the window does not."""
    xs = noisy(3000)
    for start in range(600, 2400, 60):
        xs[start : start + 6] = 60.0
        xs[start + 30 : start + 36] = -40.0
    shifts = LevelShifts(ShiftConfig(), 12, 1)
    assert feed(shifts, xs, length=12)[:, 0].max() < 1.0
    assert feed(shifts, np.full((24, 1), 60.0), length=12)[-5:, 0].min() > 1.0


def test_window_quartiles_are_numpys() -> None:
    w = np.random.default_rng(3).standard_normal((7, 10, 3)).astype(np.float32)
    q = np.quantile(w, [0.25, 0.75], axis=1)
    np.testing.assert_allclose(window_quartiles(w), np.concatenate([q[0], q[1]], axis=1), rtol=1e-6)


def test_a_level_that_wanders_slowly_stays_inside() -> None:
    xs = noisy(3000) + np.linspace(0, 60, 3000)[:, None]  # 60 noise widths over the stream
    r = feed(LevelShifts(ShiftConfig(), WINDOW, 1), xs)[:, 0]
    assert r.max() < 1.0


def test_a_rate_that_falls_to_near_zero_is_far_on_the_log_scale() -> None:
    """Log-normal rates: a fall to 2% is within two half-widths of their wide range in bytes, not in orders of magnitude."""
    rng = np.random.default_rng(4)
    xs = (1e6 * rng.lognormal(0, 0.5, 700))[:, None]
    xs[650:] = 2e4
    shifts = LevelShifts(ShiftConfig(), WINDOW, 1)
    r = feed(shifts, xs)[:, 0]
    assert np.count_nonzero(r[:640] > 1.0) <= 1  # (one window, on a history of 24 medians)
    assert r[-30:].min() > 1.0
    linear_only = feed(LevelShifts(ShiftConfig(log_floor=np.inf), WINDOW, 1), xs)[:, 0]
    assert linear_only[-30:].max() < 1.0  # what the log scale adds


def test_a_signed_sensor_that_drifts_through_zero_stays_inside() -> None:
    """Positive for its first day, then below zero: not a fall to nothing on the log scale."""
    for top, n in ((2.0, 3000), (0.5, 3000), (5.0, 800)):
        xs = np.linspace(top, -top, n)[:, None] + 0.05 * np.random.default_rng(2).standard_normal((n, 1))
        over = feed(LevelShifts(ShiftConfig(), WINDOW, 1), xs)[:, 0] > 1.0
        assert np.count_nonzero(over) <= 1  # (the noise, near zero: one window; an episode takes 3 in a row)
        log_off = LevelShifts(ShiftConfig(log_min_share=0.0), WINDOW, 1)
        assert feed(log_off, xs)[:, 0].max() > 1.0  # what the share guards against: zero crossed is 1,000x lower


def test_nothing_is_judged_before_min_samples_medians() -> None:
    xs = np.concatenate([noisy(WINDOW * 10), noisy(20, level=100.0)])
    r = feed(LevelShifts(ShiftConfig(min_samples=16), WINDOW, 1), xs)[:, 0]
    assert not r.any()


def test_a_level_over_the_line_is_not_learnt_until_forgotten() -> None:
    """Windows over the line (an episode opening, or open) keep no median: a fault's level is not the device's.
    The detector forgets a device's medians when an episode lasted its maximum: the new level is normal then."""
    shifts = LevelShifts(ShiftConfig(), WINDOW, 1)
    feed(shifts, noisy(600))
    assert feed(shifts, noisy(600, level=30.0))[-1, 0] > 1.0
    shifts.forget(0)
    feed(shifts, noisy(600, level=30.0))
    assert feed(shifts, noisy(WINDOW + 1, level=30.0, seed=5))[-1, 0] < 1.0


def test_a_forgotten_slot_starts_empty_and_slots_grow() -> None:
    shifts = LevelShifts(ShiftConfig(max_features=2), WINDOW, 2, capacity=2)
    feed(shifts, np.hstack([noisy(600), noisy(600, seed=3)]), slot=70)
    assert feed(shifts, np.full((WINDOW, 2), 50.0), slot=70)[-1].min() > 1.0
    shifts.forget(70)
    assert not feed(shifts, np.full((WINDOW, 2), 50.0), slot=70).any()
    assert shifts.nbytes > 0


def test_a_sensor_that_never_moved_has_any_step_at_the_cap() -> None:
    xs = np.concatenate([np.zeros((600, 1)), np.ones((10, 1))])
    r = feed(LevelShifts(ShiftConfig(), WINDOW, 1), xs)[:, 0]
    assert r[: 600 - WINDOW].max() == 0.0
    assert r[-3:].min() == ShiftConfig().cap


def test_off_or_for_a_model_of_too_many_sensors_nothing_is_ever_far() -> None:
    xs = np.concatenate([noisy(600), noisy(30, level=50.0)])
    assert not feed(LevelShifts(ShiftConfig(enabled=False), WINDOW, 1), xs).any()
    assert not feed(LevelShifts(ShiftConfig(enabled=False), WINDOW, 2), np.hstack([xs, noisy(630, seed=5)])).any()
    assert not feed(LevelShifts(ShiftConfig(relative_max_features=0), WINDOW, 2), np.hstack([xs, noisy(630, seed=5)])).any()
    assert not LevelShifts(ShiftConfig(relative_max_features=3), WINDOW, 4).enabled


def loaded(n: int, seed: int = 1) -> np.ndarray:
    """Three sensors driven by one load that steps between regimes (as current, speed and temperature), each
    with its own noise: (n, 3)."""
    rng = np.random.default_rng(seed)
    load = np.repeat(rng.choice([0.0, 3.0, -2.0, 1.5], n // 200 + 1), 200)[:n] + 0.3 * rng.standard_normal(n)
    return np.stack([10 + 2 * load, 50 - load, 30 + 0.5 * load], axis=1) + 0.3 * rng.standard_normal((n, 3))


def test_sensors_that_move_together_stay_inside_and_one_that_moves_alone_crosses() -> None:
    """Relative: a load regime moves every sensor (far beyond each one's own recent range) and is normal; the same
    sensor moving by much less on its own is not, and it is the one furthest out."""
    xs = loaded(6000)
    shifts = LevelShifts(ShiftConfig(), WINDOW, 3)
    assert shifts.relative and shifts.enabled
    r = feed(shifts, xs)
    assert r.max() < 1.0
    alone = loaded(300, seed=9)
    alone[:, 2] += 3.0  # the third sensor, 6 of its noise widths, with no load behind it
    r = feed(shifts, alone)
    assert r[-100:, 2].min() > 1.0
    assert (r[-100:].argmax(axis=1) == 2).all()
    # Alone, the regimes themselves are steps: each sensor by itself crosses at the first unseen one.
    single = LevelShifts(ShiftConfig(), WINDOW, 1)
    assert feed(single, xs[:, :1]).max() > 1.0


def test_relative_a_sensor_that_never_moved_is_left_to_the_level_check() -> None:
    xs = loaded(3000)
    xs[:, 1] = 7.0
    shifts = LevelShifts(ShiftConfig(), WINDOW, 3)
    feed(shifts, xs)
    step = loaded(50, seed=4)
    step[:, 1] = 9.0
    assert feed(shifts, step)[:, 1].max() == 0.0


SECONDS = ShiftConfig(horizon_s=0.0)  # (a median every window's length: these streams are a reading a second)


def detector(shifts: ShiftConfig = SECONDS) -> Detector:
    """A model blind to levels (its error is a thousandth of the window's largest value), one feature."""
    config = DetectorConfig(
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8),
        lines=LineConfig(history=32, block=2, warmup=4),
        shifts=shifts,
    )
    return build_detector(bundle(["x"], window=WINDOW), config, scorer=MaxScorer(gain=1e-3, max_batch=64))




def test_the_detector_opens_an_episode_at_a_step_its_model_reconstructs_and_names_it() -> None:
    xs = np.concatenate([noisy(800), noisy(60, level=16.0, seed=2)])
    opened = openings(detector(), xs)
    assert len(opened) == 1
    at, checks = opened[0]
    assert 800 <= at <= 800 + WINDOW + 3
    assert checks == ["shift:x"]
    assert openings(detector(ShiftConfig(enabled=False)), xs) == []
    assert openings(detector(ShiftConfig()), xs) == []  # a day's medians at one every 337 s: too few yet


def test_the_detector_gives_the_same_verdicts_batch_by_batch_and_window_by_window() -> None:
    xs = np.concatenate([noisy(800), noisy(60, level=16.0, seed=2), noisy(200, seed=3)])
    batched = detector()
    one_by_one = detector()
    one_by_one.batch_quiet = False
    assert openings(batched, xs, batch=64) == openings(one_by_one, xs, batch=64)


def test_an_evicted_device_starts_its_medians_afresh() -> None:
    d = detector()
    openings(d, noisy(800))
    slot = d.windows.slot("d")
    flat = np.array([[50.0, 50.0]], np.float32)  # (a window at 50: both quartiles)
    assert slot is not None and d.shifts.ratios(np.array([slot]), flat)[0, 0] > 1.0
    assert d.evict_idle(now_ms=T0 + 10**12, idle_ms=1) == ["d"]
    assert d.shifts.ratios(np.array([slot]), flat)[0, 0] == 0.0


def test_export_restore_and_refusals() -> None:
    before = LevelShifts(ShiftConfig(), WINDOW, 1)
    feed(before, noisy(2000), slot=3)  # (a full ring: exported oldest first)
    state = before.export(3)
    assert state is not None and before.export(4) is None and before.export(None) is None
    after = LevelShifts(ShiftConfig(), WINDOW, 1)
    assert after.restore(9, state) and not after.restore(9, state)  # a slot with medians: left as it is
    probe = np.array([[12.0, 12.0], [16.0, 16.0], [9.0, 9.0]], np.float32)
    np.testing.assert_array_equal(after.ratios(np.array([9, 9, 9]), probe), before.ratios(np.array([3, 3, 3]), probe))
    assert after.export(9) == state
    with pytest.raises(ValueError):
        after.restore(10, b"junk")
    with pytest.raises(ValueError):
        LevelShifts(ShiftConfig(max_features=2), WINDOW, 2).restore(0, state)  # another sensor count
    assert not LevelShifts(ShiftConfig(enabled=False), WINDOW, 1).restore(0, state)


def test_a_restarted_worker_takes_up_a_device_s_medians_with_its_lines() -> None:
    """A step right after a restart is found by the worker that took up the device's saved state, not by one
    that starts the device afresh (it needs 16 medians first)."""
    first = detector()
    openings(first, noisy(800))
    state = first.export_state("d")
    assert state is not None
    step = noisy(40, level=16.0, seed=2)
    later = [Reading(device_id="d", ts=T0 + (800 + i) * 1000, values={"x": float(x)}) for i, x in enumerate(step[:, 0])]
    taken_up, fresh = detector(), detector()
    assert taken_up.restore_state("d", state)
    assert taken_up.windows.slot("d") is not None and taken_up.known_devices() == ["d"]
    opened = [a for a in taken_up.process(later, now_ms=T0 + 10**9).alerts if a.episode.state == "open"]
    assert [a.check_failures for a in opened] == [["shift:x"]]
    assert not fresh.process(later, now_ms=T0 + 10**9).alerts
    basis, parts = adaptation.unpack(state)
    other = detector()
    with pytest.raises(ValueError):  # a broken part: nothing taken up, no slot left behind
        other.restore_state("e", adaptation.pack(basis, parts | {"levels": parts["levels"][:-3]}))
    assert other.windows.slot("e") is None and other.known_devices() == [] and other.model_lines.line("e") == 1.0
    assert other.export_state("e") is None


def test_the_detector_opens_for_one_sensor_of_several_moving_alone_and_not_for_load_regimes() -> None:
    names = ["amps", "rpm", "temp"]
    config = DetectorConfig(rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8), lines=LineConfig(history=32, block=2, warmup=4), shifts=SECONDS)
    d = build_detector(bundle(names, window=WINDOW), config, scorer=MaxScorer(gain=1e-3, max_batch=64))
    xs = loaded(4000)
    xs[3800:, 2] += 3.0  # the temperature rises alone
    readings = [Reading(device_id="d", ts=T0 + i * 1000, values=dict(zip(names, map(float, row)))) for i, row in enumerate(xs)]
    opened = []
    for k in range(0, len(readings), 16):
        opened += [a for a in d.process(readings[k : k + 16], now_ms=T0 + 10**9).alerts if a.episode.state == "open"]
    assert [a.check_failures for a in opened] == [["shift:temp"]]
    at = (int(np.datetime64(opened[0].window_end[:-1], "ms").astype(np.int64)) - T0) // 1000
    assert 3800 <= at <= 3800 + WINDOW + 3


def test_relative_fits_are_rebuilt_from_an_exported_slot() -> None:
    config = ShiftConfig(relative_min_samples=16)
    before = LevelShifts(config, WINDOW, 3)
    feed(before, loaded(3000), slot=2)
    state = before.export(2)
    assert state is not None
    after = LevelShifts(config, WINDOW, 3)
    assert after.restore(5, state)
    probe = loaded(4, seed=7).astype(np.float32)
    probe[1:, 2] += 3.0
    np.testing.assert_allclose(after.ratios(np.full(4, 5), probe), before.ratios(np.full(4, 2), probe), rtol=1e-6)
    assert before.ratios(np.full(4, 2), probe)[1:, 2].min() > 1.0


def test_relative_verdicts_are_the_same_batch_by_batch_and_window_by_window() -> None:
    """Windows that go one by one read their shifts ahead, at once; again where a median was kept since."""
    names = ["amps", "rpm", "temp"]
    config = DetectorConfig(
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8), lines=LineConfig(history=32, block=2, warmup=4),
        shifts=ShiftConfig(horizon_s=0.0, relative_min_samples=16),
    )  # fmt: skip
    xs = loaded(2500)
    xs[1500:1600, 2] += 3.0
    xs[2200:, 0] += 4.0
    readings = [Reading(device_id=f"d{k % 2}", ts=T0 + (i // 2) * 1000, values=dict(zip(names, map(float, row)))) for i, row in enumerate(xs) for k in (0, 1)]

    def opened(d: Detector, batch: int) -> list[tuple[str, str, list[str]]]:
        """The alerts; and every window's verdict, to the bit, in ``verdicts[d]``."""
        out, seen = [], []
        for k in range(0, len(readings), batch):
            done = d.process(readings[k : k + batch], now_ms=T0 + 10**9)
            out += [(a.device_id, a.window_end, a.check_failures) for a in done.alerts]
            seen += list(zip(done.window_devices, done.window_end_ms.tolist(), done.window_ratio.tolist()))
        verdicts[id(d)] = seen
        return out

    verdicts: dict[int, list[tuple[str, int, float]]] = {}

    def fresh() -> Detector:
        return build_detector(bundle(names, window=WINDOW), config, scorer=MaxScorer(gain=1e-3, max_batch=64))

    batched, one_by_one, alone = fresh(), fresh(), fresh()
    one_by_one.batch_quiet = False
    got = opened(batched, 64)
    assert got == opened(one_by_one, 64) == opened(alone, 1)  # (a batch of one reads nothing ahead)
    assert sorted(verdicts[id(batched)]) == sorted(verdicts[id(one_by_one)]) == sorted(verdicts[id(alone)])
    assert any("shift:temp" in checks for _, _, checks in got) and any("shift:amps" in checks for _, _, checks in got)
