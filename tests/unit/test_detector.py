"""The detector's adaptation: device lines that learn each device's normal, and what refits may learn from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream_app.contracts import Reading
from stream_app.pipeline.detector import Detector, DetectorConfig, RefitHook
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.reservoir import RefitConfig
from tests.support.builders import T0, MaxScorer, bundle
from tests.support.builders import detector as build_detector



def detector(*, warmup: int = 20, on_refit: RefitHook | None = None, refit: RefitConfig = RefitConfig()) -> Detector:
    """Adaptive lines on one feature ``x``, windows of 2: an episode opens after 3 windows over the line."""
    config = DetectorConfig(
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8),
        lines=LineConfig(history=32, block=2, warmup=warmup, max_step=0.05),
        refit=refit,
    )
    return build_detector(bundle(["x"], window=2), config, scorer=MaxScorer(max_batch=16), on_refit=on_refit)


def run(d: Detector, xs: list[float], *, device: str = "d", start: int = 0) -> list[tuple[int, str]]:
    """Feed one reading a second; return (reading index, alert state) of every alert."""
    readings = [Reading(device_id=device, ts=T0 + (start + i) * 1000, values={"x": float(x)}) for i, x in enumerate(xs)]
    out = []
    for k in range(0, len(readings), 16):
        for alert in d.process(readings[k : k + 16], now_ms=T0 + 10**9).alerts:
            index = (int(np.datetime64(alert.window_end[:-1], "ms").astype(np.int64)) - T0) // 1000
            out.append((int(index), alert.episode.state))
    return out


def test_a_normal_the_model_never_saw_is_learnt_in_warmup_and_a_fault_still_found() -> None:
    rng = np.random.default_rng(1)
    d = detector(warmup=20)
    normal = list(3.0 + 0.2 * rng.random(300))  # always 3x over the model's own line
    assert run(d, normal) == []  # no episode: not during warm-up, not after
    alerts = run(d, [30.0] * 5 + list(3.0 + 0.2 * rng.random(40)), start=300)
    assert alerts[0] == (302, "open")  # the third window over the device's own line


def test_windows_of_an_episode_never_reach_the_refit_reservoir() -> None:
    d = detector(warmup=4, on_refit=lambda *_: None, refit=RefitConfig(capacity=512, min_windows=10**6))
    assert d.reservoir is not None
    rng = np.random.default_rng(2)
    # A device that floods anomalies: mostly at 50, with short normal breaks.
    xs = [0.5 + 0.1 * rng.random() for _ in range(40)]
    for _ in range(10):
        xs += [50.0] * 30 + [0.5] * 2
    run(d, xs)
    kept = d.reservoir.windows()
    assert len(kept) > 0
    assert kept.max() < 1.0  # only plainly normal windows: nothing of the fault


def test_a_refit_hook_sees_only_windows_before_it_is_called() -> None:
    calls: list[tuple[int, int]] = []

    def hook(det: Detector, windows: np.ndarray, now_ms: int) -> None:
        calls.append((len(windows), now_ms))

    d = detector(warmup=4, on_refit=hook, refit=RefitConfig(capacity=64, min_windows=32, every_windows=32, min_interval_s=10))
    run(d, [0.5] * 200)
    assert len(calls) >= 2
    assert all(n <= 64 for n, _ in calls)
    assert all(b - a >= 10_000 for (_, a), (_, b) in zip(calls, calls[1:]))


def test_evict_idle_drops_only_devices_idle_longer_than_the_limit_by_the_workers_clock() -> None:
    d = detector(warmup=2)
    now = T0 + 10**9

    def send(device: str, i: int, at: int) -> None:
        d.process([Reading(device_id=device, ts=T0 + i * 1000, values={"x": 0.5})], now_ms=at)

    for i in range(4):
        send("old", i, now)
        send("busy", i, now)
    send("busy", 10, now + 50_000)
    assert d.devices == 2
    assert d.evict_idle(now + 60_000, 30_000) == ["old"]  # busy was seen 10 s before, old 60 s
    assert d.devices == 1 and d.unseen(["old", "busy"]) == ["old"]
    assert not d.episodes.knows("old") and len(d.model_lines) == len(d.level_lines) <= 1
    send("old", 0, now + 61_000)  # back: starts afresh, an old timestamp is no longer "out of order"
    assert d.devices == 2 and d.windows.filled(d.windows._slots["old"]) == 1


def test_memory_stays_flat_when_every_device_is_new_and_idle_ones_are_evicted() -> None:
    d = detector(warmup=2)
    sizes = []
    for round_ in range(5):
        now = T0 + round_ * 1_000_000
        for k in range(0, 2_000, 500):
            batch = [Reading(device_id=f"r{round_}-{k + j}", ts=T0, values={"x": 0.5}) for j in range(500)]
            d.process(batch, now_ms=now)
        d.evict_idle(now + 1_000_000, 500_000)
        sizes.append(d.windows.nbytes)
    assert d.devices == 0 and len(set(sizes)) == 1  # the arrays never grew after the first round
