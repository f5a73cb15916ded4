"""SeasonalLines: what recurs at the same hour every day (or week) widens that hour's line; nothing else does."""

from __future__ import annotations

import numpy as np

from stream_app.contracts import Reading
from stream_app.pipeline.detector import DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.seasonal import HOUR_MS, SeasonalLines, SeasonConfig
from tests.support.builders import T0, MaxScorer, bundle
from tests.support.builders import detector as build_detector

MINUTE_MS = 60_000
DAY_H = 24


def feed(season: SeasonalLines, device: str, hours: range, verdict, *, per_hour: int = 60) -> dict[int, tuple[float, ...]]:
    """One window a minute for ``hours``; ``verdict(hour)`` gives its (model, level) verdicts. Returns each hour's allowance."""
    out = {}
    rng = np.random.default_rng(0)
    for h in hours:
        for m in range(per_hour):
            base = verdict(h)
            values = tuple(float(v + rng.normal(0, 0.02)) for v in base)
            allow = season.observe(device, h * HOUR_MS + m * (HOUR_MS // per_hour), values)
        out[h] = allow
    return out


def weekend_like(h: int) -> tuple[float, float]:
    """Hours 10-13 of every day run at 2.5 on the level check; everything else at 0.5."""
    return (0.5, 2.5 if 10 <= h % DAY_H < 14 else 0.5)


def test_nothing_widens_before_the_history_covers_the_cycles() -> None:
    season = SeasonalLines(SeasonConfig(periods_h=(24,), cycles=(2,)))
    allow = feed(season, "d", range(0, 2 * DAY_H), weekend_like)
    assert all(a == (0.0, 0.0) for h, a in allow.items() if h < 2 * DAY_H)
    # The defaults: three days (so a one-day evaluation such as fleet-day is untouched).
    season = SeasonalLines()
    allow = feed(season, "d", range(0, 3 * DAY_H), weekend_like)
    assert set(allow.values()) == {(0.0, 0.0)}


def test_a_daily_pattern_is_normal_from_the_third_day_at_its_hours_only() -> None:
    season = SeasonalLines(SeasonConfig(periods_h=(24,), cycles=(2,), margin=1.25))
    allow = feed(season, "d", range(0, 3 * DAY_H), weekend_like)
    day3 = {h % DAY_H: a for h, a in allow.items() if h >= 2 * DAY_H}
    for hour, (model, level) in day3.items():
        if 10 <= hour < 14:
            assert 2.5 * 1.25 < level < 2.5 * 1.25 * 1.1  # mean + 2 sd of the hour, x the margin
        else:
            assert level < 1.0  # under any line: no effect
        assert model < 1.0
    assert season.allowance("other") == (0.0, 0.0)  # devices are independent


def test_a_one_off_fault_is_not_learnt_as_that_hours_normal() -> None:
    season = SeasonalLines(SeasonConfig(periods_h=(24,), cycles=(2,)))

    def fault_on_day_2(h: int) -> tuple[float, float]:
        return (8.0, 0.5) if DAY_H + 10 <= h < DAY_H + 14 else (0.5, 0.5)

    allow = feed(season, "d", range(0, 4 * DAY_H), fault_on_day_2)
    assert max(a[0] for a in allow.values()) < 1.0  # it came back on no other day


def test_a_weekly_pattern_needs_two_weeks() -> None:
    week = 7 * DAY_H
    season = SeasonalLines(SeasonConfig(periods_h=(24, 168), cycles=(3, 2)))

    def saturdays(h: int) -> tuple[float, float]:
        return (0.5, 3.0 if h % week >= 5 * DAY_H else 0.5)

    allow = feed(season, "d", range(0, 3 * week), saturdays, per_hour=4)
    weekend = [h for h in allow if h % week >= 5 * DAY_H]
    # Before: the daily consensus alone, and the day before a weekend's day is never as high as it (or no history).
    assert all(allow[h][1] < 1.0 for h in weekend if h < 2 * week)
    assert all(allow[h][1] > 3.0 for h in weekend if h >= 2 * week)
    # Weekdays keep their lines, the Monday after the weekend too (three days back is a Friday).
    assert all(allow[h][1] < 1.0 for h in allow if h >= 2 * week and h % week < 5 * DAY_H)


def test_a_silent_hour_breaks_the_consensus_and_forget_drops_the_device() -> None:
    season = SeasonalLines(SeasonConfig(periods_h=(24,), cycles=(2,)))
    feed(season, "d", range(0, DAY_H), weekend_like)
    feed(season, "d", range(DAY_H + 12, 2 * DAY_H + 12), weekend_like)  # hours 0-11 of day 2 missing
    assert season.allowance("d")[1] == 0.0  # hour 11 of day 2: no window then
    allow = feed(season, "d", range(2 * DAY_H + 12, 2 * DAY_H + 14), weekend_like)
    assert allow[2 * DAY_H + 12][1] > 2.5  # hour 12 was seen on both days
    season.forget("d")
    assert len(season) == 0 and season.allowance("d") == (0.0, 0.0)


def test_disabled_gives_no_allowance() -> None:
    season = SeasonalLines(SeasonConfig(enabled=False))
    allow = feed(season, "d", range(0, 3 * DAY_H), weekend_like)
    assert set(allow.values()) == {(0.0, 0.0)}
    assert len(season) == 0


def daily_busy_stream(days: int) -> tuple[np.ndarray, np.ndarray]:
    """One reading a minute: 0.5, and 3.0 (3x the model's line) from 10:00 to 14:00 UTC every day."""
    ts = T0 - T0 % (DAY_H * HOUR_MS) + np.arange(days * DAY_H * 60, dtype=np.int64) * MINUTE_MS
    hour = (ts // HOUR_MS) % DAY_H
    return ts, np.where((hour >= 10) & (hour < 14), 3.0, 0.5)


def episode_days(season: SeasonConfig, days: int) -> list[int]:
    """The day of each episode opened on the daily busy stream, lines otherwise frozen."""
    config = DetectorConfig(
        max_gap_ms=120_000, rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8, max_duration_s=0),
        lines=LineConfig(enabled=False), season=season, min_check_windows=0,
    )  # fmt: skip
    d = build_detector(bundle(["x"], window=2), config, scorer=MaxScorer(max_batch=64))
    ts, xs = daily_busy_stream(days)
    opened = []
    for k in range(0, len(ts), 64):
        readings = [Reading(device_id="d", ts=int(t), values={"x": float(x)}) for t, x in zip(ts[k : k + 64], xs[k : k + 64])]
        for alert in d.process(readings, now_ms=int(ts[-1]) + 1).alerts:
            if alert.episode.state == "open":
                opened.append(int((np.datetime64(alert.window_end[:-1], "ms").astype(np.int64) - ts[0]) // (DAY_H * HOUR_MS)))
    return opened


def test_the_detector_stops_alerting_on_a_daily_schedule_once_it_recurred_three_days() -> None:
    assert episode_days(SeasonConfig(enabled=False), 6) == [0, 1, 2, 3, 4, 5]  # frozen: every day
    assert episode_days(SeasonConfig(), 6) == [0, 1, 2]  # from the fourth day on, the busy hours are normal


def test_observe_many_is_observe_for_each_device() -> None:
    """Over the batch (each device once) as one by one: the same allowances, hour after hour, through
    new devices, new hours, a forgotten device's slot reused, an infinite verdict and days of a pattern."""
    rng = np.random.default_rng(4)
    one, many = SeasonalLines(), SeasonalLines()
    devices = [f"d{k}" for k in range(5)]
    for step in range(5 * 24 * 6):  # five days, a window every 10 minutes
        at = T0 + step * 600_000
        hour = (at // HOUR_MS) % 24
        values = rng.random((len(devices), 2)) * (3.0 if 1 <= hour < 5 else 1.0)  # a nightly high
        if step == 300:
            values[1, 0] = np.inf
        if step == 400:
            one.forget("d3"), many.forget("d3")
            devices[3] = "d3b"  # takes d3's slot
        batch = devices[step % 2 :]  # a device missing now and then: its hour may turn over in between
        rows = values[step % 2 :]
        expected = [one.observe(d, at, tuple(v)) for d, v in zip(batch, rows.tolist())]
        got = many.observe_many(batch, np.full(len(batch), at), rows)
        assert got.tolist() == [list(e) for e in expected]
    assert max(one.allowance(d)[0] for d in devices) > 1.0  # the pattern was learnt: the allowances were tested
