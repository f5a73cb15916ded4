"""A sliding window of the last T readings per device, in preallocated numpy ring buffers.

Each device owns one row of a (devices, 2T, F) array. Every value is written twice, at ``p`` and
``p + T``, so the window in time order is always the contiguous slice ``[p, p + T)``: reading a
window is a view, not a gather. Growing the device count doubles the arrays (amortised O(1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Push(IntEnum):
    """Outcome of adding a reading, when it was not accepted into a window."""

    DUPLICATE = -1  # same timestamp as the device's last reading: a redelivery
    OUT_OF_ORDER = -2  # older than the device's last reading


@dataclass(slots=True)
class Pushed:
    """What ``push_many`` did with a batch of readings, in the batch's order.

    ``codes``: per reading, the device's slot, or a negative ``Push`` code. ``rows``: the readings
    that completed a window to score (``filled`` >= T, every ``stride``-th), ascending, and for each
    its window (a copy, (m, T, F)), the window's first and last timestamps, and ``filled``.
    """

    codes: np.ndarray
    rows: np.ndarray
    windows: np.ndarray
    first_ms: np.ndarray
    last_ms: np.ndarray
    filled: np.ndarray


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
        # Per-slot bookkeeping as arrays: a batch's readings update them with array operations.
        self._pos = np.zeros(capacity, np.int64)
        self._count = np.zeros(capacity, np.int64)
        self._last_ts = np.full(capacity, -1, np.int64)
        self._interval = np.zeros(capacity, np.float64)  # EWMA of the device's time between readings (0: unknown)
        self._used = 0  # slots handed out so far
        self._free: list[int] = []  # slots of evicted devices, reused before the arrays grow

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._slots

    @property
    def nbytes(self) -> int:
        """Bytes of the window arrays and their per-slot bookkeeping."""
        return self._values.nbytes + self._ts.nbytes + 32 * len(self._pos)

    def push(self, device_id: str, ts_ms: int, values: np.ndarray) -> int:
        """Add a reading; return the device's slot, or a negative ``Push`` code if refused."""
        return int(self.push_many([device_id], [ts_ms], np.asarray(values, np.float32).reshape(1, -1)).codes[0])

    def push_many(self, device_ids: list[str], ts_ms: Sequence[int] | np.ndarray, values: np.ndarray, stride: int = 1) -> Pushed:
        """Add a batch of readings in order, as ``push`` one by one would, with array operations.

        A device's readings go in one per round (its first of the batch in the first round, ...),
        so each round touches each slot at most once and is a handful of array operations.
        """
        n, length = len(device_ids), self.length
        slots = self._slots
        found = list(map(slots.get, device_ids))  # (one C loop; new devices, rare, one at a time below)
        if None in found:
            found = [k if k is not None else slots[d] if d in slots else self._add_device(d) for k, d in zip(found, device_ids)]
        slot_of = np.array(found, np.int64)
        ts = np.asarray(ts_ms, np.int64)
        codes = np.empty(n, np.int64)
        rank = ranks(slot_of)  # each reading's round
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        offsets = np.arange(length)
        for r in range(int(rank.max()) + 1 if n else 0):
            rows = np.flatnonzero(rank == r)
            s, t = slot_of[rows], ts[rows]
            last = self._last_ts[s]
            taken = t > last
            codes[rows] = np.where(taken, s, np.where(t == last, Push.DUPLICATE, Push.OUT_OF_ORDER))
            rows, s, t, last = rows[taken], s[taken], t[taken], last[taken]
            seen = last >= 0
            step = (t - last)[seen]
            at = s[seen]
            interval = self._interval[at]
            # A long silence: the old readings no longer describe "now".
            self._count[at[(step > self.max_gap_ms) & (step > self.gap_intervals * interval)]] = 0
            # Folded in even across a restart: a slow device's first step is how its pace is learnt.
            self._interval[at] = np.where(interval == 0, step, 0.95 * interval + 0.05 * step)
            p = self._pos[s]
            self._values[s, p] = self._values[s, p + length] = values[rows]
            self._ts[s, p] = self._ts[s, p + length] = t
            self._pos[s] = (p + 1) % length
            self._count[s] += 1
            self._last_ts[s] = t
            filled = self._count[s]
            due = (filled >= length) & ((filled - length) % stride == 0)
            if due.any():
                s, start = s[due], self._pos[s[due]]
                parts.append((rows[due], self._values[s[:, None], start[:, None] + offsets], self._ts[s, start], t[due], filled[due]))
        if not parts:
            empty = np.empty(0, np.int64)
            return Pushed(codes, empty, np.empty((0, length, self.n_features), np.float32), empty, empty, empty)
        if len(parts) == 1:
            return Pushed(codes, *parts[0])
        rows = np.concatenate([q[0] for q in parts])
        back = np.argsort(rows, kind="stable")  # into the batch's order
        return Pushed(codes, rows[back], *(np.concatenate([q[k] for q in parts])[back] for k in range(1, 5)))

    def filled(self, slot: int) -> int:
        """How many readings the slot's current window has seen since it (re)started."""
        return int(self._count[slot])

    def window(self, slot: int) -> np.ndarray:
        """The slot's last T readings in time order, shape (T, F); a view, copy it to keep it."""
        p = int(self._pos[slot])
        return self._values[slot, p : p + self.length]

    def window_span(self, slot: int) -> tuple[int, int]:
        """Timestamps (epoch ms) of the first and last reading in the slot's window."""
        return int(self._ts[slot, self._pos[slot]]), int(self._last_ts[slot])

    def slot(self, device_id: str) -> int | None:
        """The device's slot (its row in the arrays), None for a device with none."""
        return self._slots.get(device_id)

    def claim(self, device_id: str) -> int:
        """The device's slot, given it now if it has none (state taken up before its first reading)."""
        slot = self._slots.get(device_id)
        return self._add_device(device_id) if slot is None else slot

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
        slot = self._used
        if slot == len(self._values):
            self._values = np.concatenate([self._values, np.zeros_like(self._values)])
            self._ts = np.concatenate([self._ts, np.zeros_like(self._ts)])
            self._pos = np.concatenate([self._pos, np.zeros_like(self._pos)])
            self._count = np.concatenate([self._count, np.zeros_like(self._count)])
            self._last_ts = np.concatenate([self._last_ts, np.full_like(self._last_ts, -1)])
            self._interval = np.concatenate([self._interval, np.zeros_like(self._interval)])
        self._used += 1
        self._slots[device_id] = slot
        return slot

    def interval_ms(self, device_id: str) -> float:
        """The device's typical time between readings (0 until known)."""
        slot = self._slots.get(device_id)
        return 0.0 if slot is None else float(self._interval[slot])


def ranks(keys: np.ndarray) -> np.ndarray:
    """Each item's rank among the items of the same key before it (0 for a key's first): its round, when
    a batch is taken in rounds that hold each key at most once."""
    n = len(keys)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    first = np.ones(n, bool)
    first[1:] = ordered[1:] != ordered[:-1]
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))
    return rank
