"""A sliding window of the last T readings per device, in preallocated numpy ring buffers.

Each device owns one row of a (devices, 2T, F) array. Every value is written twice, at ``p`` and
``p + T``, so the window in time order is always the contiguous slice ``[p, p + T)``: reading a
window is a view, not a gather. Growing the device count doubles the arrays (amortised O(1)).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Push(IntEnum):
    """Outcome of adding a reading, when it was not accepted into a window."""

    DUPLICATE = -1  # same timestamp as the device's last reading: a redelivery
    OUT_OF_ORDER = -2  # older than the device's last reading


class WindowStore:
    def __init__(
        self, length: int, n_features: int, *, max_gap_ms: int, gap_intervals: float = 10.0, capacity: int = 256
    ) -> None:
        if length < 1 or n_features < 1:
            raise ValueError("window length and feature count must be positive")
        self.length = length
        self.n_features = n_features
        # A gap restarts the window when it is longer than ``max_gap_ms`` and than ``gap_intervals`` of
        # the device's own typical interval: a 5-minute stream is not "silent" after 60 s.
        self.max_gap_ms = max_gap_ms
        self.gap_intervals = gap_intervals
        self._slots: dict[str, int] = {}
        self._values = np.zeros((capacity, 2 * length, n_features), dtype=np.float32)
        self._ts = np.zeros((capacity, 2 * length), dtype=np.int64)
        # Per-slot bookkeeping in Python lists: read and written once per reading, where a numpy
        # scalar access costs several times a list's.
        self._pos: list[int] = []
        self._count: list[int] = []
        self._last_ts: list[int] = []
        self._free: list[int] = []  # slots of evicted devices, reused before the arrays grow
        self._interval: list[float] = []  # EWMA of the device's time between readings (0: unknown)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._slots

    @property
    def nbytes(self) -> int:
        """Bytes of the window arrays (the per-slot lists add about 60 bytes a device)."""
        return self._values.nbytes + self._ts.nbytes

    def push(self, device_id: str, ts_ms: int, values: np.ndarray) -> int:
        """Add a reading; return the device's slot, or a negative ``Push`` code if refused."""
        slot = self._slots.get(device_id)
        if slot is None:
            slot = self._add_device(device_id)
        last = self._last_ts[slot]
        if ts_ms <= last:
            return Push.DUPLICATE if ts_ms == last else Push.OUT_OF_ORDER
        if last >= 0:
            step = ts_ms - last
            interval = self._interval[slot]
            if step > self.max_gap_ms and step > self.gap_intervals * interval:
                self._count[slot] = 0  # a long silence: the old readings no longer describe "now"
            # Folded in even across a restart: a slow device's first step is how its pace is learnt.
            self._interval[slot] = step if interval == 0 else 0.95 * interval + 0.05 * step
        p = self._pos[slot]
        t = self.length
        self._values[slot, p] = self._values[slot, p + t] = values
        self._ts[slot, p] = self._ts[slot, p + t] = ts_ms
        self._pos[slot] = (p + 1) % t
        self._count[slot] += 1
        self._last_ts[slot] = ts_ms
        return slot

    def filled(self, slot: int) -> int:
        """How many readings the slot's current window has seen since it (re)started."""
        return self._count[slot]

    def window(self, slot: int) -> np.ndarray:
        """The slot's last T readings in time order, shape (T, F); a view, copy it to keep it."""
        p = self._pos[slot]
        return self._values[slot, p : p + self.length]

    def window_span(self, slot: int) -> tuple[int, int]:
        """Timestamps (epoch ms) of the first and last reading in the slot's window."""
        p = self._pos[slot]
        return int(self._ts[slot, p]), self._last_ts[slot]

    def remove(self, device_id: str) -> bool:
        """Forget a device (idle eviction); its slot is reused by the next new device."""
        slot = self._slots.pop(device_id, None)
        if slot is None:
            return False
        self._free.append(slot)
        return True

    def _add_device(self, device_id: str) -> int:
        if self._free:
            slot = self._free.pop()
            self._slots[device_id] = slot
            self._pos[slot], self._count[slot], self._last_ts[slot] = 0, 0, -1
            return slot
        slot = len(self._pos)
        if slot == len(self._values):
            self._values = np.concatenate([self._values, np.zeros_like(self._values)])
            self._ts = np.concatenate([self._ts, np.zeros_like(self._ts)])
        self._slots[device_id] = slot
        self._pos.append(0)
        self._count.append(0)
        self._last_ts.append(-1)
        self._interval.append(0.0)
        return slot

    def interval_ms(self, device_id: str) -> float:
        """The device's typical time between readings (0 until known)."""
        slot = self._slots.get(device_id)
        return 0.0 if slot is None else self._interval[slot]
