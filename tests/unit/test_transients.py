"""Brief excursions a device keeps making open no episode once seen; higher or longer ones still do."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from stream_app.contracts import Reading
from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.shifts import ShiftConfig
from stream_app.pipeline.transients import TransientConfig, TransientMemory
from tests.support.builders import T0, MaxScorer, bundle
from tests.support.builders import detector as build_detector


def detector(transients: TransientConfig = TransientConfig()) -> Detector:
    """One feature ``x``, windows of 4 (a brief excursion: at most 4 + 8 - 1 = 11 windows over the line)."""
    config = DetectorConfig(
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8),
        lines=LineConfig(history=32, block=2, warmup=4, max_step=0.05),
        transients=transients,
        shifts=ShiftConfig(enabled=False),  # (a spike of half a window moves its median: that check is tested on its own)
    )
    return build_detector(bundle(["x"], window=4), config, scorer=MaxScorer(max_batch=16))


def stream(spikes: list[tuple[float, int]], *, seed: int = 3) -> tuple[list[float], list[int]]:
    """Normal around 0.5 (the line is 1.0) with each (height, readings) excursion after 40 quiet readings;
    also the index each excursion starts at."""
    rng = np.random.default_rng(seed)
    xs, starts = [0.5 + 0.05 * rng.random() for _ in range(60)], []
    for height, length in spikes:
        starts.append(len(xs))
        xs += [height] * length + [0.5 + 0.05 * rng.random() for _ in range(40)]
    return xs, starts


def openings(d: Detector, xs: list[float], *, device: str = "d") -> list[int]:
    """Reading indices (one a second) of the windows at which episodes opened."""
    readings = [Reading(device_id=device, ts=T0 + i * 1000, values={"x": x}) for i, x in enumerate(xs)]
    out = []
    for k in range(0, len(readings), 16):
        for alert in d.process(readings[k : k + 16], now_ms=T0 + 10**9).alerts:
            if alert.episode.state == "open":
                out.append((int(np.datetime64(alert.window_end[:-1], "ms").astype(np.int64)) - T0) // 1000)
    return out


def excursion_of(index: int, starts: list[int]) -> int:
    return max(k for k, s in enumerate(starts) if s <= index)


def test_spikes_a_device_keeps_making_open_episodes_only_until_two_were_seen() -> None:
    xs, starts = stream([(2.5, 2)] * 10)
    opened = [excursion_of(i, starts) for i in openings(detector(), xs)]
    assert opened == [0, 1]  # then the device's own spikes: known


def test_a_higher_or_a_lasting_excursion_still_opens_one() -> None:
    xs, starts = stream([(2.5, 2)] * 6 + [(6.0, 2), (2.5, 2), (2.5, 30), (2.5, 2)])
    at = openings(detector(), xs)
    opened = [excursion_of(i, starts) for i in at]
    assert opened == [0, 1, 6, 8]  # the higher spike at once; the lasting one late, once it outlasts the spikes
    lasting = at[-1] - starts[8]
    assert 9 <= lasting <= 4 + 4 + 4 + 3  # a spike's 5 windows, the slack, then a run of open_after


def test_off_every_excursion_opens_an_episode() -> None:
    xs, _ = stream([(2.5, 2)] * 10)
    assert len(openings(detector(TransientConfig(enabled=False)), xs)) == 10


def test_a_device_that_floods_long_excursions_never_learns_them() -> None:
    """Excursions longer than a few readings are not spikes: repeated, each is still an episode."""
    xs, _ = stream([(2.5, 14)] * 8)
    assert len(openings(detector(), xs)) == 8


def test_devices_learn_their_own_spikes_apart() -> None:
    d = detector()
    xs, _ = stream([(2.5, 2)] * 5)
    assert len(openings(d, xs, device="a")) == 2
    assert len(openings(d, xs, device="b")) == 2


def test_the_memory_survives_a_restart_through_the_detectors_state() -> None:
    xs, starts = stream([(2.5, 2)] * 4)
    before = detector()
    assert len(openings(before, xs)) == 2
    state = before.export_state("d")
    assert state is not None
    after = detector()
    assert after.restore_state("d", state)
    more, _ = stream([(2.5, 2)] * 3, seed=4)
    assert openings(after, more) == []  # known at once: no episode to learn them again
    fresh = detector()
    assert len(openings(fresh, more)) == 2


def test_export_restore_and_refusals() -> None:
    memory = TransientMemory(window=4)
    for at in range(5):  # five 3-window excursions a minute apart, one window a second
        for k in range(3):
            memory.crossing("d", at * 60_000 + k * 1000, 2.0 + at, 0.5, 1000.0)
    state = memory.export("d")
    assert state is not None and memory.export("nobody") is None
    other = TransientMemory(window=4)
    assert other.restore("d", state) and not other.restore("d", state)  # a device it knows: left as it is
    assert other.crossing("d", 10 * 60_000, 3.0, 0.5, 1000.0)  # matches the restored excursions (peaks 3.0-5.0)
    assert other.crossing("d", 11 * 60_000, 3.0, 0.9, 1000.0)  # the level check is not over its line: only the model counts
    assert not other.crossing("d", 12 * 60_000, 3.0, 0.9, 1000.0, level_over=True)  # over it, and further out than any
    with pytest.raises(ValueError):
        other.restore("e", b"junk")
    with pytest.raises(ValueError):
        other.restore("e", struct.pack("<qqddqq", 0, 1000, -1.0, 0.5, 2, 0))  # a negative verdict
    assert not TransientMemory(TransientConfig(enabled=False)).restore("d", state)


def test_known_windows_are_counted_and_stay_out_of_the_lines_history() -> None:
    d = detector()
    xs, _ = stream([(2.5, 2)] * 6)
    readings = [Reading(device_id="d", ts=T0 + i * 1000, values={"x": x}) for i, x in enumerate(xs)]
    known = sum(d.process(readings[k : k + 16], now_ms=T0 + 10**9).known_spikes for k in range(0, len(readings), 16))
    assert known == 4 * 5 == d.known_spikes  # the last four spikes, 5 windows over the line each; the run's total
    line_after_spikes = d.model_lines.line("d")
    off = detector(TransientConfig(enabled=False))
    for k in range(0, len(readings), 16):
        off.process(readings[k : k + 16], now_ms=T0 + 10**9)
    assert line_after_spikes <= off.model_lines.line("d")  # the known spikes did not raise it


def test_a_spike_on_another_sensor_is_not_one_the_device_knows() -> None:
    config = DetectorConfig(
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8),
        lines=LineConfig(history=32, block=2, warmup=4, max_step=0.05),
    )
    d = build_detector(bundle(["x", "y"], window=4), config, scorer=MaxScorer(max_batch=16))
    xs, starts = stream([(2.5, 2)] * 5)
    ys = [0.5] * len(xs)
    tail, _ = stream([(2.5, 2)], seed=5)
    xs, ys = xs + [0.5] * len(tail), ys + tail  # then the same spike on y
    readings = [Reading(device_id="d", ts=T0 + i * 1000, values={"x": x, "y": y}) for i, (x, y) in enumerate(zip(xs, ys))]
    opened = []
    for k in range(0, len(readings), 16):
        opened += [a.top_feature for a in d.process(readings[k : k + 16], now_ms=T0 + 10**9).alerts if a.episode.state == "open"]
    assert opened == ["x", "x", "y"]


def test_spikes_in_a_burst_are_a_fault_not_the_devices_spikes() -> None:
    """Lone spikes are learnt; the same spikes one after another (an intermittent fault) still alert."""
    xs, starts = stream([(2.5, 2)] * 5)
    burst_at = len(xs)
    for _ in range(6):  # 12 readings apart: 7 quiet windows between them, fewer than two window lengths
        xs += [2.5] * 2 + [0.5] * 10
    xs += [0.5] * 40
    opened = openings(detector(), xs)
    assert len([i for i in opened if i < burst_at]) == 2 and [i for i in opened if i >= burst_at]
    no_rule = openings(detector(TransientConfig(quiet_windows=0)), xs)
    assert [i for i in no_rule if i >= burst_at] == []  # each spike of the burst alone looks like the lone ones
