"""WindowStore: per-device ring buffers that always give the last T readings in time order."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.pipeline.windows import Push, WindowStore

T, F = 4, 3


def values(i: int) -> np.ndarray:
    """A reading whose features identify it: i, 100 + i, 200 + i."""
    return np.array([i, 100 + i, 200 + i], np.float32)


def fill(store: WindowStore, device: str, timestamps: range | list[int]) -> int:
    slot = -99
    for ts in timestamps:
        slot = store.push(device, ts, values(ts))
        assert slot >= 0
    return slot


def test_window_is_in_time_order_after_the_ring_wraps_several_times() -> None:
    store = WindowStore(T, F, max_gap_ms=10)
    pushed = []
    for i in range(1, 3 * T + 3):  # wraps three times and stops mid-ring
        slot = store.push("d", i, values(i))
        pushed.append(values(i))
        if len(pushed) >= T:
            np.testing.assert_array_equal(store.window(slot), np.stack(pushed[-T:]))
    assert store.window(slot).shape == (T, F)


def test_window_span_is_first_and_last_timestamp_of_the_window() -> None:
    store = WindowStore(T, F, max_gap_ms=1000)
    slot = fill(store, "d", [100, 200, 300, 400, 500, 600, 700])
    assert store.window_span(slot) == (400, 700)


def test_filled_counts_readings_seen() -> None:
    store = WindowStore(T, F, max_gap_ms=1000)
    slot = fill(store, "d", [1, 2])
    assert store.filled(slot) == 2
    fill(store, "d", range(3, 10))
    assert store.filled(slot) == 9


def test_equal_timestamp_is_a_duplicate_and_changes_nothing() -> None:
    store = WindowStore(T, F, max_gap_ms=1000)
    slot = fill(store, "d", [1, 2, 3, 4, 5])
    before, span, count = store.window(slot).copy(), store.window_span(slot), store.filled(slot)

    assert store.push("d", 5, np.full(F, -1.0, np.float32)) == Push.DUPLICATE

    np.testing.assert_array_equal(store.window(slot), before)
    assert store.window_span(slot) == span
    assert store.filled(slot) == count


def test_older_timestamp_is_out_of_order_and_changes_nothing() -> None:
    store = WindowStore(T, F, max_gap_ms=1000)
    slot = fill(store, "d", [10, 20, 30, 40, 50])
    before, span, count = store.window(slot).copy(), store.window_span(slot), store.filled(slot)

    assert store.push("d", 15, np.full(F, -1.0, np.float32)) == Push.OUT_OF_ORDER

    np.testing.assert_array_equal(store.window(slot), before)
    assert store.window_span(slot) == span
    assert store.filled(slot) == count
    # The next in-order reading is accepted as usual.
    assert store.push("d", 60, values(60)) == slot
    assert store.window_span(slot) == (30, 60)


def test_refusal_codes_are_negative_so_they_cannot_be_mistaken_for_a_slot() -> None:
    assert Push.DUPLICATE < 0 and Push.OUT_OF_ORDER < 0


def test_gap_longer_than_max_gap_restarts_the_count() -> None:
    store = WindowStore(T, F, max_gap_ms=100, gap_intervals=0)
    slot = fill(store, "d", [0, 50, 100, 150, 200])
    assert store.filled(slot) == 5

    store.push("d", 301, values(301))  # 101 ms of silence

    assert store.filled(slot) == 1
    fill(store, "d", [350, 400, 450])
    assert store.filled(slot) == T
    np.testing.assert_array_equal(store.window(slot), np.stack([values(t) for t in (301, 350, 400, 450)]))
    assert store.window_span(slot) == (301, 450)


def test_gap_of_exactly_max_gap_keeps_the_count() -> None:
    store = WindowStore(T, F, max_gap_ms=100)
    slot = fill(store, "d", [0, 100, 200])
    assert store.filled(slot) == 3


def test_growth_beyond_initial_capacity_keeps_earlier_windows() -> None:
    store = WindowStore(T, F, max_gap_ms=1000, capacity=2)
    devices = [f"d{k}" for k in range(5)]
    slots = {}
    for k, device in enumerate(devices):
        # Device k's readings are offset by 1000 * k, so every window is distinct.
        slots[device] = fill(store, device, range(1000 * k + 1, 1000 * k + T + 3))

    assert len(store) == 5
    assert sorted(slots.values()) == [0, 1, 2, 3, 4]
    for k, device in enumerate(devices):
        last = range(1000 * k + 3, 1000 * k + T + 3)
        np.testing.assert_array_equal(store.window(slots[device]), np.stack([values(t) for t in last]))
        assert store.window_span(slots[device]) == (last[0], last[-1])
        assert store.filled(slots[device]) == T + 2


def test_growth_keeps_duplicate_detection_for_earlier_devices() -> None:
    store = WindowStore(T, F, max_gap_ms=1000, capacity=1)
    fill(store, "a", [5])
    fill(store, "b", [7])  # forces a grow
    assert store.push("a", 5, values(5)) == Push.DUPLICATE
    assert store.push("b", 1, values(1)) == Push.OUT_OF_ORDER


def test_devices_are_independent() -> None:
    store = WindowStore(T, F, max_gap_ms=1000)
    a = fill(store, "a", [1, 2, 3, 4])
    b = fill(store, "b", [1, 2])  # same timestamps, other device: not duplicates
    assert a != b
    assert (store.filled(a), store.filled(b)) == (4, 2)


@pytest.mark.parametrize(("length", "features"), [(0, 3), (4, 0)])
def test_rejects_empty_shapes(length: int, features: int) -> None:
    with pytest.raises(ValueError):
        WindowStore(length, features, max_gap_ms=1)


def test_a_slow_device_is_not_silent_at_its_own_pace() -> None:
    # Readings every 5 minutes against a 60 s max_gap: only the very first step restarts (pace unknown).
    store = WindowStore(T, F, max_gap_ms=60_000)
    slot = fill(store, "d", [i * 300_000 for i in range(6)])
    assert store.filled(slot) == 5
    assert store.interval_ms("d") == 300_000
    store.push("d", 5 * 300_000 + 11 * 300_000, values(0))  # 55 minutes of silence: more than 10 intervals
    assert store.filled(slot) == 1


def test_an_evicted_device_slot_is_reused_and_starts_empty() -> None:
    store = WindowStore(2, 1, max_gap_ms=60_000, capacity=2)
    store.push("a", 1, np.array([1.0]))
    store.push("b", 1, np.array([2.0]))
    assert store.remove("a") and not store.remove("a")
    assert "a" not in store and len(store) == 1
    slot = store.push("c", 5, np.array([3.0]))
    assert slot == 0 and store.filled(slot) == 1  # a's slot, fresh
    assert store.nbytes == WindowStore(2, 1, max_gap_ms=60_000, capacity=2).nbytes  # no growth


class ScalarStore:
    """The store as it was before batches were pushed as arrays: one reading at a time, in Python."""

    def __init__(self, max_gap_ms: int, gap_intervals: float = 10.0) -> None:
        self.max_gap_ms, self.gap_intervals = max_gap_ms, gap_intervals
        self.state: dict[str, dict[str, object]] = {}
        self.rows: dict[str, list[tuple[int, np.ndarray]]] = {}

    def push(self, device: str, ts: int, values: np.ndarray) -> int:
        st = self.state.setdefault(device, {"last": -1, "count": 0, "interval": 0.0})
        last, interval = int(st["last"]), float(st["interval"])  # type: ignore[arg-type]
        if ts <= last:
            return Push.DUPLICATE if ts == last else Push.OUT_OF_ORDER
        if last >= 0:
            step = ts - last
            if step > self.max_gap_ms and step > self.gap_intervals * interval:
                st["count"] = 0
            st["interval"] = step if interval == 0 else 0.95 * interval + 0.05 * step
        st["count"] = int(st["count"]) + 1  # type: ignore[call-overload]
        st["last"] = ts
        self.rows.setdefault(device, []).append((ts, values.copy()))
        return 0

    def filled(self, device: str) -> int:
        return int(self.state[device]["count"])  # type: ignore[call-overload]

    def window(self, device: str) -> tuple[np.ndarray, int, int]:
        last = self.rows[device][-T:]
        return np.stack([v for _, v in last]), last[0][0], last[-1][0]


@pytest.mark.parametrize("stride", [1, 3])
def test_a_batch_pushed_at_once_equals_the_old_store_one_reading_at_a_time(stride: int) -> None:
    rng = np.random.default_rng(10 + stride)
    ref, many = ScalarStore(max_gap_ms=50), WindowStore(T, F, max_gap_ms=50, capacity=2)
    clock = {f"d{i}": 0 for i in range(12)}
    for _ in range(60):
        devices, stamps = [], []
        for _ in range(int(rng.integers(0, 30))):
            device = f"d{rng.integers(0, 12)}"
            clock[device] = max(clock[device] + int(rng.choice([-3, 0, 1, 1, 2, 7, 120, 400])), 0)
            devices.append(device)
            stamps.append(clock[device])
        rows = rng.standard_normal((len(devices), F)).astype(np.float32)
        pushed = many.push_many(devices, stamps, rows, stride)
        due = []
        for k, (device, ts) in enumerate(zip(devices, stamps)):
            code = ref.push(device, ts, rows[k])
            assert (code >= 0) == (pushed.codes[k] >= 0) and (code < 0) <= (code == pushed.codes[k])
            if code >= 0 and ref.filled(device) >= T and (ref.filled(device) - T) % stride == 0:
                due.append((k, *ref.window(device), ref.filled(device)))
        assert pushed.rows.tolist() == [d[0] for d in due]
        for i, (_, window, first, last, filled) in enumerate(due):
            np.testing.assert_array_equal(pushed.windows[i], window)
            assert (pushed.first_ms[i], pushed.last_ms[i], pushed.filled[i]) == (first, last, filled)
        for device in clock:
            if device in ref.state:
                assert many.interval_ms(device) == ref.state[device]["interval"]


@pytest.mark.parametrize("stride", [1, 3])
def test_a_batch_pushed_at_once_equals_its_readings_pushed_one_by_one(stride: int) -> None:
    # Devices repeat within a batch, come and go, send duplicates, late readings and long gaps.
    rng = np.random.default_rng(stride)
    one, many = (WindowStore(T, F, max_gap_ms=50, capacity=2) for _ in range(2))
    clock = {f"d{i}": 0 for i in range(12)}
    for _ in range(40):
        devices, stamps = [], []
        for _ in range(int(rng.integers(0, 30))):
            device = f"d{rng.integers(0, 12)}"
            step = int(rng.choice([-3, 0, 1, 1, 2, 5, 200]))
            clock[device] = max(clock[device] + step, 0) if step >= 0 else clock[device] + step
            devices.append(device)
            stamps.append(max(clock[device], 0))
        rows = rng.standard_normal((len(devices), F)).astype(np.float32)
        pushed = many.push_many(devices, stamps, rows, stride)
        codes, due = [], []
        for k, (device, ts) in enumerate(zip(devices, stamps)):
            code = one.push(device, ts, rows[k])
            codes.append(code)
            if code >= 0 and one.filled(code) >= T and (one.filled(code) - T) % stride == 0:
                due.append((k, one.window(code).copy(), *one.window_span(code), one.filled(code)))
        assert pushed.codes.tolist() == codes
        assert pushed.rows.tolist() == [d[0] for d in due]
        for i, (_, window, first, last, filled) in enumerate(due):
            np.testing.assert_array_equal(pushed.windows[i], window)
            assert (pushed.first_ms[i], pushed.last_ms[i], pushed.filled[i]) == (first, last, filled)
        for device in clock:
            assert one.interval_ms(device) == many.interval_ms(device)
        if rng.random() < 0.2:
            gone = f"d{rng.integers(0, 12)}"
            one.remove(gone), many.remove(gone)
