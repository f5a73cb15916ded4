"""Seasonal lines: what recurs at the same hour of the day or the week is normal for that hour.

A machine that runs lighter every weekend, or idles every night, moves its verdicts (model and level
check) away from the week's typical level on a schedule. ``AdaptiveLines`` follow a device's recent
normal, but a change that comes back every Saturday comes back faster than they move, and each time
it opens an episode. ``SeasonalLines`` remembers, per device and hour (of the stream's time, UTC),
how high its verdicts ran that hour: the hour's mean + 2 sd of its windows' verdicts. The device's
line for the current hour is widened to that level x ``margin`` when the **same hour of each of the
last three days, or of the last two weeks, ran that high** (``cycles``); never narrowed.

- Consensus over cycles, not one cycle: a fault on Tuesday at 10:00 is not learnt as Tuesday
  10:00's normal unless it came back at that hour on each of the last three days (or two weeks). So the
  hours are recorded whatever the verdict, in episodes too: a weekend the detector flagged the first
  time is what teaches it that weekends are normal.
- Nothing changes before a device's history covers those cycles: a daily pattern needs three days of
  history, a weekly one two weeks (one configuration for every stream, no per-dataset setting); a
  device without a schedule keeps its lines, since its hours never run consistently higher than its
  normal line. A condition that lasts three days widens every hour, as a lasting change of regime
  does the adaptive lines.

State: a ring of the last two weeks' hours per device (about 2.7 KB a device with two channels), in
memory like the lines, and saved with them for the next worker to meet the device (``export``, adaptation.py).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

HOUR_MS = 3_600_000
# A device's exported state (``export``): ring hours, channels, the hour accumulating and its windows; then the
# hour's sums and sums of squares (float64 per channel), the ring's hours (int32) and levels (float16).
_HEAD = struct.Struct("<qqqq")


@dataclass(frozen=True, slots=True)
class SeasonConfig:
    enabled: bool = True
    periods_h: tuple[int, ...] = (24, 168)  # a day and a week, in hours
    # Per period: an hour's level must have recurred at that hour of each of this many past cycles. Three
    # days, not two: the Monday after a two-day weekend would otherwise be allowed the weekend's level.
    cycles: tuple[int, ...] = (3, 2)
    margin: float = 1.25  # the widened line is the recurring level x this (as the lines' margin)
    sd: float = 2.0  # an hour's level: its windows' mean verdict + this x their sd


class SeasonalLines:
    """Per device, per hour of the day and of the week: how far each of ``channels`` verdicts may go."""

    def __init__(self, config: SeasonConfig = SeasonConfig(), channels: int = 2) -> None:
        self.config = config
        self.channels = channels
        if len(config.cycles) != len(config.periods_h):
            raise ValueError("one number of cycles per period")
        self._ring = max((p * c for p, c in zip(config.periods_h, config.cycles)), default=1)  # hours kept
        # Hours back that must all have run high, per period: h - P, h - 2P, ...
        self._back = [[p * k for k in range(1, c + 1)] for p, c in zip(config.periods_h, config.cycles)]
        self._none = (0.0,) * channels
        self._zeros = [0.0] * channels
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        # float16: levels are ratios to a line (~0.1-100); two weeks of hours cost a device 2.7 KB, not 4
        self._high = np.zeros((0, self._ring, channels), np.float16)  # each kept hour's level
        self._hour_of = np.zeros((0, self._ring), np.int32)  # which hour each ring entry holds (-1: none)
        # Per slot: the hour being accumulated, its windows and their sums (per channel, slot-major). Typed
        # arrays: indexed one at a time as fast as lists, and viewed by numpy without a copy in
        # ``observe_many`` (float64: the arithmetic of Python floats).
        self._hour = array("q")
        self._n = array("q")
        self._sum = array("d")
        self._sumsq = array("d")
        self._allow: list[tuple[float, ...]] = []  # per slot: the current hour's allowance per channel
        self._allow_at = array("d")  # the same, slot-major, for ``observe_many``

    def __len__(self) -> int:
        return len(self._slots)

    def observe(self, device_id: str, end_ms: int, values: tuple[float, ...]) -> tuple[float, ...]:
        """Record one window's verdicts (1.0 = the calibrated line) and return the allowances of its hour:
        per channel, the line the device may have this hour (0.0 where nothing recurs)."""
        if not self.config.enabled:
            return self._none
        hour = end_ms // HOUR_MS
        slot = self._slots.get(device_id)
        if slot is None:
            slot = self._add(device_id, hour)
        elif hour != self._hour[slot]:
            if hour < self._hour[slot]:  # (the detector refuses readings out of order; be safe anyway)
                return self._allow[slot]
            self._close(slot)
            self._hour[slot] = hour
            self._set_allow(slot, self._allowance(slot, hour))
        self._n[slot] += 1
        s, q = self._sum, self._sumsq
        k = slot * self.channels
        for v in values:  # (plain floats and a loop: this runs for every window of a device seen twice in a batch)
            if v > 1e6:  # finite: a failed check's infinite distance is not a level
                v = 1e6
            s[k] += v
            q[k] += v * v
            k += 1
        return self._allow[slot]

    def observe_many(self, device_ids: Sequence[str], end_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``observe`` over a batch: each device at most once (the order between devices is free).
        ``values``: (n, channels) float64; returns the (n, channels) allowances, 0.0 where nothing recurs."""
        n = len(device_ids)
        if not self.config.enabled or not n:
            return np.zeros((n, self.channels), np.float64)
        hours = np.asarray(end_ms, np.int64) // HOUR_MS
        slots = np.array(list(map(self._slots.get, device_ids, repeat(-1))), np.int64)
        # A new device or a new hour (once an hour a device) goes one at a time; the rest is a few array ops.
        simple = slots >= 0
        simple[simple] = hours[simple] == _view(self._hour, np.int64)[slots[simple]]
        allow = np.empty((n, self.channels), np.float64)
        for k in np.flatnonzero(~simple).tolist():  # (may add slots: the arrays are viewed after it)
            allow[k] = self.observe(device_ids[k], int(end_ms[k]), tuple(values[k].tolist()))
        at = slots[simple]
        v = values[simple]
        v = np.where(v > 1e6, 1e6, v)  # (as ``observe``; NaN is kept, as there)
        _view(self._n, np.int64)[at] += 1
        _view(self._sum, np.float64, self.channels)[at] += v
        _view(self._sumsq, np.float64, self.channels)[at] += v * v
        allow[simple] = _view(self._allow_at, np.float64, self.channels)[at]
        return allow

    def allowance(self, device_id: str) -> tuple[float, ...]:
        """The device's allowances for the hour of its latest window."""
        slot = self._slots.get(device_id)
        return self._none if slot is None else self._allow[slot]

    def export(self, device_id: str) -> bytes | None:
        """The device's state as bytes (None for a device never seen), for ``restore`` in another worker."""
        slot = self._slots.get(device_id)
        if slot is None:
            return None
        c = self.channels
        row = slice(slot * c, (slot + 1) * c)
        return b"".join((
            _HEAD.pack(self._ring, c, self._hour[slot], self._n[slot]),
            np.asarray(self._sum[row], "<f8").tobytes(), np.asarray(self._sumsq[row], "<f8").tobytes(),
            self._hour_of[slot].astype("<i4").tobytes(), self._high[slot].astype("<f2").tobytes(),
        ))  # fmt: skip

    def restore(self, device_id: str, state: bytes) -> bool:
        """Take up an ``export``ed state for a device this instance has not met (False, unchanged, for one it
        has, or for a state kept with other periods or channels). Raises ValueError for bytes that are not one."""
        if device_id in self._slots or not self.config.enabled:
            return False
        if len(state) < _HEAD.size:
            raise ValueError(f"not a seasonal state ({len(state)} bytes)")
        ring, c, hour, n = _HEAD.unpack_from(state)
        if (ring, c) != (self._ring, self.channels):
            return False
        if len(state) != _HEAD.size + 16 * c + ring * (4 + 2 * c) or n < 0:
            raise ValueError("not a seasonal state (inconsistent fields)")
        at = _HEAD.size
        sums = np.frombuffer(state, "<f8", 2 * c, at)
        at += 16 * c
        hour_of = np.frombuffer(state, "<i4", ring, at)
        high = np.frombuffer(state, "<f2", ring * c, at + 4 * ring).reshape(ring, c)
        slot = self._add(device_id, hour)
        self._hour_of[slot], self._high[slot] = hour_of, high
        self._n[slot] = n
        row = slice(slot * c, (slot + 1) * c)
        self._sum[row], self._sumsq[row] = array("d", sums[:c].tolist()), array("d", sums[c:].tolist())
        self._set_allow(slot, self._allowance(slot, hour))
        return True

    def forget(self, device_id: str) -> None:
        slot = self._slots.pop(device_id, None)
        if slot is not None:
            self._free.append(slot)

    def _close(self, slot: int) -> None:
        """The accumulated hour is over: keep its level in the ring."""
        n = self._n[slot]
        c = self.channels
        row = slice(slot * c, (slot + 1) * c)
        if n:
            mean = np.asarray(self._sum[row]) / n
            var = np.maximum(np.asarray(self._sumsq[row]) / n - mean * mean, 0.0)
            at = self._hour[slot] % self._ring
            self._high[slot, at] = np.minimum(mean + self.config.sd * np.sqrt(var), 6e4)  # float16's range
            self._hour_of[slot, at] = self._hour[slot]
        self._n[slot] = 0
        self._sum[row] = self._sumsq[row] = array("d", self._zeros)

    def _set_allow(self, slot: int, allow: tuple[float, ...]) -> None:
        self._allow[slot] = allow
        self._allow_at[slot * self.channels : (slot + 1) * self.channels] = array("d", allow)

    def _allowance(self, slot: int, hour: int) -> tuple[float, ...]:
        best = np.zeros(self.channels, np.float32)
        for back in self._back:
            hours = [hour - b for b in back]
            at = [h % self._ring for h in hours]
            if np.array_equal(self._hour_of[slot, at], hours):  # every past cycle has this hour
                best = np.maximum(best, self._high[slot, at].min(axis=0))
        return tuple(float(v) * self.config.margin for v in best)

    def _add(self, device_id: str, hour: int) -> int:
        c = self.channels
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._hour)
            if slot == len(self._high):
                grow = max(16, len(self._high) // 2)  # by half: a fleet's worth of slack, not twice it
                self._high = np.concatenate([self._high, np.zeros((grow, self._ring, c), np.float16)])
                self._hour_of = np.concatenate([self._hour_of, np.full((grow, self._ring), -1, np.int32)])
            self._hour.append(0)
            self._n.append(0)
            self._sum.extend(self._zeros)
            self._sumsq.extend(self._zeros)
            self._allow_at.extend(self._zeros)
            self._allow.append(self._none)
        self._slots[device_id] = slot
        self._hour_of[slot] = -1
        self._hour[slot], self._n[slot] = hour, 0
        self._set_allow(slot, self._none)
        row = slice(slot * c, (slot + 1) * c)
        self._sum[row] = self._sumsq[row] = array("d", self._zeros)
        return slot


def _view(values: array, dtype: type[np.generic], columns: int = 0) -> np.ndarray:
    """A typed array as numpy, without a copy (``columns``: as rows of that many); hold it only briefly:
    a typed array viewed cannot grow."""
    out = np.frombuffer(values, dtype) if len(values) else np.zeros(0, dtype)
    return out.reshape(-1, columns) if columns else out
