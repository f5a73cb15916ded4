"""NormalReservoir: the recent normal windows a refit learns from, and when a refit is due."""

from __future__ import annotations

import numpy as np

from stream_app.pipeline.reservoir import NormalReservoir, RefitConfig

CONFIG = RefitConfig(capacity=8, min_windows=4, every_windows=6, min_interval_s=10.0)


def window(k: float) -> np.ndarray:
    return np.full((3, 2), k, np.float32)


def test_it_keeps_the_newest_windows_oldest_first() -> None:
    reservoir = NormalReservoir(3, 2, CONFIG)
    for k in range(11):
        reservoir.add(window(k))
    kept = reservoir.windows()
    assert len(reservoir) == 8
    assert [float(w[0, 0]) for w in kept] == [3, 4, 5, 6, 7, 8, 9, 10]


def test_a_refit_needs_enough_new_windows_and_enough_stream_time() -> None:
    reservoir = NormalReservoir(3, 2, CONFIG)
    for k in range(5):
        reservoir.add(window(k))
    assert not reservoir.due(0)  # 5 new windows < every_windows
    reservoir.add(window(5))
    assert not reservoir.due(1_000)  # the clock starts now
    assert reservoir.due(11_000)
    reservoir.fitted(11_000)
    for k in range(6):
        reservoir.add(window(k))
    assert not reservoir.due(15_000)  # too soon after the last try
    assert reservoir.due(21_000)


def test_disabled_never_due() -> None:
    reservoir = NormalReservoir(3, 2, RefitConfig(enabled=False, capacity=8, min_windows=1, every_windows=1, min_interval_s=0))
    reservoir.add(window(1))
    assert not reservoir.due(10**12)


def test_adding_a_batch_keeps_what_adding_one_by_one_keeps() -> None:
    one, batch = NormalReservoir(3, 2, CONFIG), NormalReservoir(3, 2, CONFIG)
    windows = np.stack([window(k) for k in range(30)])
    for rows in ([1, 2], [], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [20, 22, 29]):
        for k in rows:
            one.add(windows[k])
        batch.add_many(windows, np.array(rows, np.int64))
        assert len(one) == len(batch) and one.due(0) == batch.due(0)
        np.testing.assert_array_equal(one.windows(), batch.windows())
