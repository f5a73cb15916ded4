"""A lone sensor's hour against the same hour of past days and weeks (pipeline/profiles.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline import profiles as profiles_module
from stream_app.pipeline.profiles import HOUR_MS, HourProfiles, ProfileConfig
from stream_app.pipeline.shifts import ShiftConfig
from stream_app.pipeline.transients import TransientConfig
from tests.support.builders import T0, MaxScorer, bundle, openings
from tests.support.builders import detector as build_detector

EVERY_S = 600
DAY = 86_400 // EVERY_S  # readings a day


def shifts(days: int, *, seed: int = 0, odd_day: int | None = None, holiday: bool = False) -> np.ndarray:
    """A day shift (busy 8:00-18:00), lighter at weekends, with noise: (readings, 1). On ``odd_day`` (a
    weekday) the shift never starts, or with ``holiday`` is a weekend's."""
    t_s = T0 // 1000 + np.arange(days * DAY) * EVERY_S
    hour = (t_s % 86_400) / 3600
    weekend = (t_s // 86_400 + 3) % 7 >= 5  # (1970-01-01 was a Thursday)
    busy = (hour >= 8) & (hour < 18)
    x = 10.0 + np.where(busy, np.where(weekend, 20.0, 40.0), 0.0)
    x += np.random.default_rng(seed).normal(0, 1.0, len(x))
    if odd_day is not None:
        assert not weekend[odd_day * DAY + DAY // 2], "the odd day must be a weekday"
        day = slice(odd_day * DAY, (odd_day + 1) * DAY)
        x[day] = 10.0 + np.where(busy[day], 20.0, 0.0) * holiday + np.random.default_rng(seed + 1).normal(0, 1.0, DAY)
    return x[:, None]


def detector(*, hours: bool = True) -> Detector:
    """A model blind to the level (its error a thousandth of the window's largest value), no level envelope."""
    config = DetectorConfig(
        max_gap_ms=2 * EVERY_S * 1000,
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8),
        lines=LineConfig(history=32, block=2, warmup=4),
        shifts=ShiftConfig(enabled=False),
        transients=TransientConfig(enabled=False),
        profiles=ProfileConfig(enabled=hours),
    )
    return build_detector(bundle(["x"], window=5), config, scorer=MaxScorer(gain=1e-3, max_batch=64))


def verdicts(profiles: HourProfiles, xs: np.ndarray, device: str = "d") -> np.ndarray:
    return np.array([profiles.observe(device, T0 + i * EVERY_S * 1000, float(x)) for i, x in enumerate(xs[:, 0])])


def test_a_day_whose_shift_never_starts_is_far_from_the_same_hours_before() -> None:
    xs = shifts(24, odd_day=20)
    r = verdicts(HourProfiles(), xs)
    assert (r[: 7 * DAY] == 0.0).all() and r[7 * DAY : 8 * DAY].max() > 0.0  # a week of history first: no line yet
    odd = slice(20 * DAY, 21 * DAY)
    assert r[odd].max() > 3.0
    assert r[: 20 * DAY].max() <= 1.0 and r[21 * DAY + DAY // 4 :].max() <= 1.0  # weekends included


def test_weekends_are_normal() -> None:
    """A Saturday is far from Friday but not from the Sunday before it."""
    r = verdicts(HourProfiles(), shifts(21))  # (it starts on a Wednesday: days 3-4, 10-11 and 17-18 are weekends)
    assert r[7 * DAY :].max() > 0.0 and r.max() <= 1.0
    early = verdicts(HourProfiles(ProfileConfig(min_history_h=0, first_line_h=0)), shifts(21))
    assert early[: DAY + DAY // 2].max() > 0.0  # judged as soon as a day back is kept (no history asked for)


@pytest.mark.parametrize("lag", range(1, 7))
def test_a_weekend_on_other_days_of_the_utc_week_is_normal_too(lag: int) -> None:
    """A Friday-Saturday weekend, a site far from UTC: some days are always far from the last days of their
    UTC type. Its first line waits for a week of history, so those days are among the hours it is learnt from."""
    xs = shifts(30 + lag)[lag * DAY :]  # (the readings of day ``lag`` on: the weekend ``lag`` days sooner)
    for first in range(7):  # started on each day of the week
        times = [T0 + (first * DAY + i) * EVERY_S * 1000 for i in range(len(xs) - first * DAY)]
        profiles = HourProfiles()
        assert max(profiles.observe("d", t, float(x)) for t, x in zip(times, xs[first * DAY :, 0])) <= 1.0
    if lag == 1:  # a Friday-Saturday weekend started on a Sunday: a first line from Tuesday to Thursday alone
        hasty = HourProfiles(ProfileConfig(first_line_h=0))
        times = [T0 + (4 * DAY + i) * EVERY_S * 1000 for i in range(len(xs) - 4 * DAY)]
        assert max(hasty.observe("d", t, float(x)) for t, x in zip(times, xs[4 * DAY :, 0])) > 3.0


def evenings(days: int, lag_h: int, odd_day: int) -> tuple[list[int], list[float]]:
    """Times (UTC, ms) and readings of a site whose local time lags UTC by ``lag_h`` hours, busy from 14:00 to
    midnight local time, lighter at weekends; on ``odd_day`` (a weekday there) as light as a weekend's."""
    t_s = T0 // 1000 // 86_400 * 86_400 + np.arange(days * DAY) * EVERY_S  # (from a UTC midnight, a Wednesday)
    local = t_s - lag_h * 3600
    weekend = (local // 86_400 + 3) % 7 >= 5
    busy = (local % 86_400) >= 14 * 3600
    x = 10.0 + np.where(busy, np.where(weekend, 20.0, 40.0), 0.0)
    assert not weekend[odd_day * DAY : (odd_day + 1) * DAY].any(), "the odd day must be a weekday there"
    x[odd_day * DAY : (odd_day + 1) * DAY] = 10.0 + 20.0 * busy[odd_day * DAY : (odd_day + 1) * DAY]
    x += np.random.default_rng(0).normal(0, 1.0, len(x))
    return (t_s * 1000).tolist(), x.tolist()


@pytest.mark.parametrize("lag_h", [8, 16, 24, -24])  # west of UTC, far west, Sunday-Monday, Friday-Saturday
@pytest.mark.parametrize("day", [8, 13])  # (UTC) a Thursday of the second week, a Tuesday of the third
def test_each_device_finds_its_own_week(lag_h: int, day: int) -> None:
    """A site whose evenings cross UTC midnight: by UTC dates its Sunday evening is a Monday's and its Friday
    evening a Saturday's, far from the days of their UTC type; fitted to the device, its week finds its holiday
    and nothing else over the line."""
    times, xs = evenings(30, lag_h, day)
    odd = slice(day * DAY, (day + 1) * DAY + DAY // 2)  # (a day's verdicts come as its hours close)
    profiles = HourProfiles()
    r = np.array([profiles.observe("d", t, x) for t, x in zip(times, xs)])
    assert r[odd].max() > 3.0 and np.delete(r, np.r_[odd]).max() <= 1.0
    plain = HourProfiles(ProfileConfig(own_week=False))
    r = np.array([plain.observe("d", t, x) for t, x in zip(times, xs)])
    assert r[odd].max() <= 1.0 or np.delete(r, np.r_[odd]).max() > 1.0  # the UTC week misses it, or more


@pytest.mark.parametrize(("first", "later"), [(1, 9), (2, 9), (5, 12), (6, 13)])
def test_an_odd_day_before_the_first_line_does_not_set_it(first: int, later: int) -> None:
    """A holiday in a device's first week, before any line, is among the distances its first line is learnt
    from: kept, it set the line for two weeks (the next holiday under it) and the same day a week later was
    judged against it (the weekly reference). Its hours are dropped from the first line and are no week's base."""
    xs = shifts(30, odd_day=first, holiday=True)
    xs[later * DAY : (later + 1) * DAY] = shifts(30, odd_day=later, holiday=True)[later * DAY : (later + 1) * DAY]
    odd = slice(later * DAY, (later + 1) * DAY + DAY // 4)
    others = np.r_[first * DAY : (first + 1) * DAY + DAY // 4, odd]
    r = verdicts(HourProfiles(), xs)
    assert r[odd].max() > 3.0 and np.delete(r, others).max() <= 1.0
    kept = verdicts(HourProfiles(ProfileConfig(first_trim=math.inf)), xs)
    assert kept[odd].max() <= 1.0


def test_a_stream_without_a_week_keeps_the_utc_one() -> None:
    """A lag is taken only when its days fit clearly better: noise fits every lag alike."""
    profiles = HourProfiles()
    rng = np.random.default_rng(3)
    for i in range(30 * DAY):
        profiles.observe("d", T0 + i * EVERY_S * 1000, 10.0 + float(rng.normal()))
    assert profiles._lag == [0]


@pytest.mark.parametrize("day", [8, 12, 13, 19])  # a Thursday, a Monday, a Tuesday, a Monday
def test_a_weekday_like_a_sunday_is_far_from_the_weekdays_before_it(day: int) -> None:
    """A holiday: the last three days before a Monday or a Tuesday hold a weekend, whose level their median is,
    so the daily reference is the last three days of its own type; the weekly one is not needed for it."""
    xs = shifts(24, odd_day=day, holiday=True)  # (days 3-4, 10-11 and 17-18 are weekends)
    r = verdicts(HourProfiles(), xs)
    assert r[day * DAY : (day + 1) * DAY].max() > 2.0
    assert r[: day * DAY].max() <= 1.0 and r[(day + 1) * DAY + DAY // 4 :].max() <= 1.0
    if day == 12:  # the last three days whatever their type: the Tuesday after it meets a holiday and a weekend
        plain = verdicts(HourProfiles(ProfileConfig(day_types=False)), xs)
        assert plain[13 * DAY : 14 * DAY].max() > 1.0


def test_each_device_is_judged_against_the_reference_that_fits_it() -> None:
    """A stream whose every day of the week has its own level is far from its last days but not from its past
    weeks; a stream without a week is nearer its last days."""
    t_s = T0 // 1000 + np.arange(24 * DAY) * EVERY_S
    hour, weekday = (t_s % 86_400) / 3600, (t_s // 86_400 + 3) % 7
    xs = 10.0 + np.where((hour >= 8) & (hour < 18), 10.0 + 5.0 * weekday, 0.0)
    xs += np.random.default_rng(1).normal(0, 1.0, len(xs))
    weekly = HourProfiles()
    assert verdicts(weekly, xs[:, None]).max() <= 1.0
    assert weekly._by_week[weekly._slots["d"]]
    xs[20 * DAY : 21 * DAY] = xs[19 * DAY : 20 * DAY]  # a Tuesday that is Monday again
    assert verdicts(HourProfiles(), xs[:, None])[20 * DAY : 21 * DAY].max() > 1.0
    flat = HourProfiles()
    verdicts(flat, np.random.default_rng(3).normal(10.0, 1.0, (24 * DAY, 1)))
    assert not flat._by_week[flat._slots["d"]]


def test_a_lasting_move_of_two_noise_sd_is_not_far() -> None:
    """An hour's mean is steady: without the floor (the readings' scatter within an hour) a new load level
    would be far from the days before until the daily median caught up."""
    xs = shifts(24)
    xs[15 * DAY + 30 :] += 2.0  # (the noise sd is 1.0)
    assert verdicts(HourProfiles(), xs).max() <= 1.0
    assert verdicts(HourProfiles(ProfileConfig(spread=0.0)), xs).max() > 1.0


def test_a_burst_of_a_few_readings_does_not_move_its_hour() -> None:
    """Busy streams burst for a few readings now and then: the hour's median, not its mean, is compared."""
    xs = shifts(24)
    hours = np.random.default_rng(5).choice(np.arange(12 * 24, 24 * 24 - 1), 30, replace=False)
    for hour in hours:  # (the readings start 6:40 past an hour: a reading at +2 is inside the hour)
        at = int(hour) * 6 + 2
        xs[at : at + 2] += 60.0  # two readings of a six-reading hour, at 2-7x the level, after the line is learnt
    assert verdicts(HourProfiles(), xs).max() <= 1.0


def test_the_state_goes_to_another_worker() -> None:
    xs = shifts(24, odd_day=20)
    first, second = HourProfiles(), HourProfiles()
    verdicts(first, xs[: 15 * DAY])
    state = first.export("d")
    assert state is not None and len(state) < 12_000
    assert second.restore("d", state) and not second.restore("d", state)  # (only for a device it has not met)
    rest = xs[15 * DAY :]
    later = [T0 + (15 * DAY + i) * EVERY_S * 1000 for i in range(len(rest))]
    a = [first.observe("d", t, float(x)) for t, x in zip(later, rest[:, 0])]
    b = [second.observe("d", t, float(x)) for t, x in zip(later, rest[:, 0])]
    assert a == b and max(a) > 3.0
    with pytest.raises(ValueError):
        HourProfiles().restore("e", state[:-4])
    assert first.export("nobody") is None


def test_a_fleet_started_together_learns_its_lines_a_few_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Devices that started in the same hour learn their first lines in the same hour, and relearn them
    together each day (~1 ms a device): a batch learns a few, the next batches the rest, and every device
    still finds its odd day."""
    n, budget = 24, 5
    fleet = [shifts(24, seed=seed, odd_day=20)[:, 0] for seed in range(n)]
    ids = [f"d{k}" for k in range(n)]
    learnt: list[int] = []
    relearn = HourProfiles._relearn

    def counted(self: HourProfiles, slot: int) -> None:
        learnt[-1] += 1
        relearn(self, slot)

    monkeypatch.setattr(HourProfiles, "_relearn", counted)
    profiles = HourProfiles(ProfileConfig(relearns_min=budget, windows_per_relearn=1_000))
    verdicts = []
    for i in range(24 * DAY):
        learnt.append(0)
        ends = np.full(n, T0 + i * EVERY_S * 1000, np.int64)
        verdicts.append(profiles.observe_many(ids, ends, np.array([x[i] for x in fleet])))
    r = np.array(verdicts)
    assert max(learnt) == budget and sum(learnt) >= n * 10  # (a first line and a relearning a day, a few a batch)
    assert not profiles._due
    odd = slice(20 * DAY, 21 * DAY + DAY // 4)
    assert (r[odd].max(axis=0) > 3.0).all() and np.delete(r, np.r_[odd], axis=0).max() <= 1.0
    monkeypatch.setattr(HourProfiles, "_relearn", relearn)
    at_once = HourProfiles()  # (unbounded: 24 devices a batch are under the default's 64)
    alone = np.array([at_once.observe_many(ids, np.full(n, T0 + i * EVERY_S * 1000, np.int64), np.array([x[i] for x in fleet])) for i in range(24 * DAY)])
    assert (alone[odd].max(axis=0) > 3.0).all() and not (alone == r).all()


def test_a_device_forgotten_while_its_line_waits_is_not_learnt() -> None:
    profiles = HourProfiles(ProfileConfig(relearns_min=1, windows_per_relearn=1_000))
    xs = shifts(9)[:, 0]
    for i in range(len(xs)):
        profiles.observe_many(["a", "b", "c"], np.full(3, T0 + i * EVERY_S * 1000, np.int64), np.full(3, xs[i]))
        if profiles._due:
            break
    assert profiles._due
    for device in ("a", "b", "c"):
        profiles.forget(device)
    assert not profiles._due
    assert profiles.observe("e", T0, 1.0) == 0.0  # (a new device in a freed slot starts afresh)


def test_a_state_saved_before_the_own_week_is_taken_up() -> None:
    """Saved before 2026-11-28's later session: no lag in the head, no distances' hours after the moves."""
    first = HourProfiles()
    verdicts(first, shifts(15))
    state = first.export("d")
    assert state is not None
    history = first.config.history_h
    old = state[: profiles_module._HEAD_V1.size] + state[profiles_module._HEAD.size : len(state) - 4 * history - first._ring]
    second = HourProfiles()
    assert second.restore("d", old) and second._lag == [0] and (second._dist_hour[0] == -1).all()
    assert second._line == first._line and (second._dist[0] == first._dist[0]).all()
    rest = shifts(30)[15 * DAY :, 0]  # (and it goes on, its week fitted with distances of unknown hours)
    assert max(second.observe("d", T0 + (15 * DAY + i) * EVERY_S * 1000, float(x)) for i, x in enumerate(rest)) <= 1.0


def test_the_detector_opens_an_hour_episode_on_that_day_only() -> None:
    xs = shifts(24, odd_day=20)
    opened = openings(detector(), xs, every_s=EVERY_S)
    assert opened and all(20 * DAY <= at < 21 * DAY + DAY // 4 for at, _ in opened)
    assert opened[0][1] == ["hour:x"]
    assert openings(detector(hours=False), xs, every_s=EVERY_S) == []  # the blind model alone sees nothing


def test_a_worker_saves_the_profile_with_the_lines() -> None:
    from stream_app.pipeline import adaptation

    first, xs = detector(), shifts(12)
    openings(first, xs, every_s=EVERY_S)
    state = first.export_state("d")
    assert state is not None and "hours" in adaptation.unpack(state)[1]
    second = detector()
    assert second.restore_state("d", state)
    assert second.profiles.export("d") == first.profiles.export("d")


def test_models_of_several_sensors_keep_no_profile() -> None:
    d = build_detector(bundle(["x", "y"], window=5), DetectorConfig(max_gap_ms=2 * EVERY_S * 1000))
    assert d._profiling is False
    assert HOUR_MS == 3_600_000


def test_the_setting_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_app.config.settings import Settings
    from stream_app.worker.start import detector_config

    settings = Settings()
    assert detector_config(settings.detection, settings.episodes).profiles.enabled is True
    monkeypatch.setenv("FLOORWATCH_CHECK_HOURS", "false")
    settings = Settings()
    assert detector_config(settings.detection, settings.episodes).profiles.enabled is False
