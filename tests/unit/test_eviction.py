"""Idle-device eviction: the worker's per-device state stays bounded when device ids churn."""

from __future__ import annotations

import numpy as np

from stream_app.contracts import Reading
from stream_app.pipeline.windows import WindowStore
from tests.unit.test_detector import T0, detector


def test_an_evicted_device_slot_is_reused_and_starts_empty() -> None:
    store = WindowStore(2, 1, max_gap_ms=60_000, capacity=2)
    store.push("a", 1, np.array([1.0]))
    store.push("b", 1, np.array([2.0]))
    assert store.remove("a") and not store.remove("a")
    assert "a" not in store and len(store) == 1
    slot = store.push("c", 5, np.array([3.0]))
    assert slot == 0 and store.filled(slot) == 1  # a's slot, fresh
    assert store.nbytes == WindowStore(2, 1, max_gap_ms=60_000, capacity=2).nbytes  # no growth


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
