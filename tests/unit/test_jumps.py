"""A lone sensor's step between two readings against the largest it made in training (thresholds.jump_lines)."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.scorer import Scores
from stream_app.pipeline.shifts import ShiftConfig
from stream_app.pipeline.thresholds import JUMP_MARGIN, calibrate, jump_lines
from stream_app.pipeline.transients import TransientConfig
from tests.support.builders import MaxScorer, bundle, openings
from tests.support.builders import detector as build_detector

WINDOW = 5


def walk(n: int, seed: int = 1) -> np.ndarray:
    """A level that wanders: a random walk of unit steps, (n, 1)."""
    return (100.0 + np.cumsum(np.random.default_rng(seed).standard_normal(n)))[:, None]


def detector(
    line: float, *, jumps: bool = True, transients: TransientConfig = TransientConfig(enabled=False), max_gap_ms: int = 60_000,
    peak_threshold: float | None = None,
) -> Detector:
    """A model blind to the level (its error a thousandth of the window's largest value) with a jump line, and a
    peak line at ``peak_threshold`` (in the same units) if given."""
    config = DetectorConfig(
        max_gap_ms=max_gap_ms,
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8),
        lines=LineConfig(history=32, block=2, warmup=4),
        shifts=ShiftConfig(enabled=False),
        transients=transients,
        jumps=jumps,
    )
    model = bundle(["x"], window=WINDOW, jump_lines={"x": line}, peak_threshold=peak_threshold)
    return build_detector(model, config, scorer=PeakScorer(gain=1e-3, max_batch=64))


class PeakScorer(MaxScorer):
    """The blind model with a peak line's verdict beside it: each window's largest value (times ``gain``)."""

    def score(self, windows: np.ndarray) -> Scores:
        scores = super().score(windows)
        return Scores(feature_errors=scores.feature_errors, score=scores.score, peak=scores.score.copy())




def test_the_jump_line_is_a_margin_over_the_largest_step_of_a_lone_sensor() -> None:
    xs = np.array([[1.0], [2.0], [4.0], [3.5], [3.0]])
    assert jump_lines(xs, ["x"]) == {"x": JUMP_MARGIN * 2.0}
    assert jump_lines(np.hstack([xs, xs]), ["x", "y"]) == {}  # several sensors: the model knows how they move together
    assert jump_lines(np.full((10, 1), 5.0), ["x"]) == {}  # never moved: no scale to judge a step by
    assert jump_lines(xs[:1], ["x"]) == {}
    t = calibrate(np.abs(np.random.default_rng(0).normal(size=(20, 1))), ["x"], readings=xs)
    assert t.jump_lines == {"x": JUMP_MARGIN * 2.0}


def test_the_validation_windows_steps_count_too() -> None:
    """The held-out rows are normal too: a heavy tail met there is not a jump for ever after."""
    xs = np.array([[1.0], [2.0], [4.0], [3.5], [3.0]])
    held_out = np.array([[[3.0], [3.2], [8.0]], [[3.2], [8.0], [3.2]]])  # (windows, T, 1): one step of 4.8
    assert jump_lines(xs, ["x"], held_out=held_out) == {"x": pytest.approx(JUMP_MARGIN * 4.8)}
    assert jump_lines(xs, ["x"], held_out=held_out[:, :1]) == {"x": JUMP_MARGIN * 2.0}  # windows of one reading: no step
    t = calibrate(np.abs(np.random.default_rng(0).normal(size=(20, 1))), ["x"], readings=xs, held_out=held_out)
    assert t.jump_lines == {"x": pytest.approx(JUMP_MARGIN * 4.8)}


def test_a_spike_on_a_wandering_level_opens_an_episode_named_jump_and_the_walk_does_not() -> None:
    xs = walk(1000)
    line = JUMP_MARGIN * float(np.abs(np.diff(xs[:300, 0])).max())
    assert openings(detector(line), xs) == []  # its own steps, however far the level went
    spiked = xs.copy()
    spiked[700:702] += 12.0
    opened = openings(detector(line), spiked)
    assert len(opened) == 1
    at, checks = opened[0]
    assert 700 <= at <= 700 + 3 and checks == ["jump:x"]
    assert openings(detector(line, jumps=False), spiked) == []  # the blind model alone misses it


def test_a_lone_sensors_spike_is_judged_by_the_jump_check_not_the_peak_line() -> None:
    """The peak line read a busy stream's benign spikes as faults where the jump check, with its own line and
    its memory of a device's spikes, already judges them: with the jump check on, a lone sensor has none."""
    xs = 100.0 + 0.1 * np.random.default_rng(5).standard_normal((600, 1))
    xs[400] = 200.0  # a step far under the jump line below, its window twice the others' peak
    assert openings(detector(1e6, peak_threshold=0.15), xs) == []
    assert [at for at, _ in openings(detector(1e6, jumps=False, peak_threshold=0.15), xs)] == [402]


def test_a_device_that_keeps_making_the_same_jump_learns_it() -> None:
    xs = walk(1600, seed=2)
    line = JUMP_MARGIN * float(np.abs(np.diff(xs[:300, 0])).max())
    for at in (400, 700, 1000, 1300):
        xs[at] += 30.0  # (far above the walk's steps, so each is about as high as the others)
    opened = openings(detector(line, transients=TransientConfig(min_seen=2)), xs)
    assert [at // 100 for at, _ in opened] == [4, 7]  # the first two teach the memory; the next are its own


def test_a_jump_at_the_same_hour_every_day_is_a_schedule_after_three_days() -> None:
    """The seasonal lines see jumps in the level channel: what recurred at this hour on each of the last three
    days widens the jump line for the hour (seasonal.py); a jump at another hour still opens."""
    day = 144  # readings a day, one every 10 minutes
    xs = walk(7 * day, seed=4)
    line = JUMP_MARGIN * float(np.abs(np.diff(xs[:day, 0])).max())
    for d in range(7):
        xs[d * day + 100] += 30.0  # a burst at the same time every day
    xs[5 * day + 40] -= 30.0  # and one out of schedule
    opened = openings(detector(line, max_gap_ms=1_200_000), xs, every_s=600)
    bursts = [100, day + 100, 2 * day + 100, 5 * day + 40]  # the first three days' and the one out of schedule
    assert len(opened) == len(bursts) and all(0 <= at - b <= 3 for (at, _), b in zip(opened, bursts))
    assert {tuple(checks) for _, checks in opened} == {("jump:x",)}


def test_the_same_verdicts_batch_by_batch_and_window_by_window() -> None:
    xs = walk(1000, seed=3)
    xs[500:503] -= 15.0
    xs[800] += 9.0
    line = JUMP_MARGIN * float(np.abs(np.diff(xs[:300, 0])).max())
    batched, one_by_one = detector(line), detector(line)
    one_by_one.batch_quiet = False
    assert openings(batched, xs, batch=64) == openings(one_by_one, xs, batch=64) != []


def test_the_setting_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_app.config.settings import Settings
    from stream_app.worker.start import detector_config

    settings = Settings()
    assert detector_config(settings.detection, settings.episodes).jumps is True
    monkeypatch.setenv("FLOORWATCH_CHECK_JUMPS", "false")
    settings = Settings()
    assert detector_config(settings.detection, settings.episodes).jumps is False
