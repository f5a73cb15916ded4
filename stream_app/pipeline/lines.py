"""Alerting lines that follow each device's own normal.

A model's calibrated line (1.0) is fitted once, on the data the model was trained on. Machines
drift, get serviced and change regime, and a model meets devices whose normal it never saw; a
frozen line then reads that normal as anomalous for ever. ``AdaptiveLines`` keeps, per device, a
short history of its verdicts (in units of the calibrated line) from windows outside alert
episodes, and sets the device's line at a high quantile of that history times a margin, never
below the calibrated line:

- the history holds block maxima (the largest of ``block`` windows), so a few hundred entries span
  thousands of windows and keep the tail that matters for a high quantile;
- a slow fault that creeps up must not drag the notion of normal along with it: a high quantile of
  the history follows the newest highs at once, so the line is also held to ``median_cap`` times the
  history's median, which moves only once most of the history has moved, and it moves at most
  ``max_step`` (relative) per recomputation;
- a device's first ``warmup`` windows (and the windows after ``relearn``) only fill its history:
  its line is not trusted yet, so the detector opens no episode for it meanwhile.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from itertools import repeat
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


EARLY_BLOCKS = 4  # blocks under the calibrated line after which a device's warm-up ends early
# A device's exported state (``export``): filled, seen, block_n, block_max, line; then its block maxima, oldest first.
_HEAD = struct.Struct("<qqqdd")


@dataclass(frozen=True, slots=True)
class LineConfig:
    history: int = 256  # block maxima kept per device
    block: int = 4  # windows per block
    quantile: float = 0.99
    margin: float = 1.25  # the line is the quantile x margin, as calibration's multiplier
    warmup: int = 64  # windows before a device's own line is trusted
    median_cap: float = 3.0  # the line is at most this x the history's median
    max_step: float = 0.02  # largest relative move of a line per recomputation (every block)
    enabled: bool = True


class AdaptiveLines:
    """Per-device lines in units of the calibrated line: 1.0 = the model's own line.

    The detector reads and feeds it one window at a time (``line``, ``learning``, ``observe``) where a
    device has several windows in a batch, and over the whole batch at once (``slots``, ``lines_at``,
    ``learning_at``, ``observe_each``) for the devices that have one: per-window Python was most of
    what adaptation cost. Both work on the same per-slot state and give the same lines to the bit.
    """

    def __init__(self, config: LineConfig = LineConfig()) -> None:
        self.config = config
        self._slots: dict[str, int] = {}
        self._history = np.zeros((64, config.history), np.float32)
        # The same block maxima kept sorted (the first ``_filled`` of each row), so a recomputation reads its
        # quantile and median off the row: np.quantile on every block was most of adaptation's cost.
        self._sorted = np.zeros((64, config.history), np.float32)
        # Per slot. Typed arrays: indexed one at a time as fast as lists (numpy's scalar indexing costs
        # several times more), and viewed as numpy arrays without a copy by the batch methods (``_columns``).
        self._filled = array("q")  # block maxima stored
        self._pos = array("q")
        self._seen = array("q")  # windows observed since the device (re)started learning
        self._block_max = array("d")
        self._block_n = array("q")
        self._line = array("d")
        self._free: list[int] = []  # slots of forgotten devices, reused before the arrays grow

    def __len__(self) -> int:
        return len(self._slots)

    def line(self, device_id: str) -> float:
        slot = self._slots.get(device_id)
        return 1.0 if slot is None else self._line[slot]

    def learning(self, device_id: str) -> bool:
        """Whether the device is still in warm-up (its line is not trusted yet).

        A device whose first blocks sit under the calibrated line is one the model fits: it is trusted
        after ``EARLY_BLOCKS`` blocks, so a restarted worker (whose lines start empty) does not look away
        for the whole warm-up. Only a device the model does not fit learns for all of it.
        """
        if not self.config.enabled:
            return False
        slot = self._slots.get(device_id)
        if slot is None:
            return True
        if self._seen[slot] >= self.config.warmup:
            return False
        return self._filled[slot] < EARLY_BLOCKS or self._line[slot] > 1.0

    def observe(self, device_id: str, value: float) -> None:
        """Record one window's verdict (1.0 = calibrated line) from outside any episode."""
        if not self.config.enabled:
            return
        slot = self._slots.get(device_id)
        if slot is None:
            slot = self._add(device_id)
        self._seen[slot] += 1
        if value > self._block_max[slot]:
            self._block_max[slot] = value
        self._block_n[slot] += 1
        if self._block_n[slot] < self.config.block:
            return
        p, n = self._pos[slot], self._filled[slot]
        new = np.float32(self._block_max[slot])
        row = self._sorted[slot]
        if n == self.config.history:  # the oldest block leaves the sorted row
            i = int(np.searchsorted(row[:n], self._history[slot, p]))
            row[i : n - 1] = row[i + 1 : n]
            n -= 1
        j = int(np.searchsorted(row[:n], new))
        row[j + 1 : n + 1] = row[j:n]
        row[j] = new
        self._history[slot, p] = new
        self._pos[slot] = (p + 1) % self.config.history
        self._filled[slot] = n + 1
        self._block_max[slot], self._block_n[slot] = -np.inf, 0
        self._recompute_one(slot)

    def relearn(self, device_id: str) -> None:
        """Forget the device's history: what it does now is its new normal (after a long episode)."""
        slot = self._slots.get(device_id)
        if slot is None:
            return
        self._filled[slot] = self._pos[slot] = self._seen[slot] = self._block_n[slot] = 0
        self._block_max[slot] = -np.inf
        self._line[slot] = 1.0

    def relearn_all(self) -> None:
        """``relearn`` every device: the verdicts' units changed (a model trained afresh)."""
        for device_id in self._slots:
            self.relearn(device_id)

    def export(self, device_id: str) -> bytes | None:
        """The device's state as bytes (None for a device never seen), for ``restore`` in another worker:
        a restart or a handover then goes on from it instead of warming up again."""
        slot = self._slots.get(device_id)
        if slot is None:
            return None
        n, p = self._filled[slot], self._pos[slot]
        row = self._history[slot]
        oldest_first = row[:n] if n < self.config.history else np.concatenate([row[p:], row[:p]])
        head = _HEAD.pack(n, self._seen[slot], self._block_n[slot], self._block_max[slot], self._line[slot])
        return head + oldest_first.astype("<f4").tobytes()

    def restore(self, device_id: str, state: bytes) -> bool:
        """Take up an ``export``ed state for a device this instance has not met (False, unchanged, for one it
        has: its own state is newer). A history longer than this one's keeps its newest block maxima.
        Raises ValueError for bytes that are not such a state."""
        if device_id in self._slots:
            return False
        if len(state) < _HEAD.size or (len(state) - _HEAD.size) % 4:
            raise ValueError(f"not a line state ({len(state)} bytes)")
        filled, seen, block_n, block_max, line = _HEAD.unpack_from(state)
        values = np.frombuffer(state, "<f4", offset=_HEAD.size)
        if filled != len(values) or seen < 0 or not 0 <= block_n < self.config.block or not np.isfinite(line) or line < 1.0:
            raise ValueError("not a line state (inconsistent fields)")
        kept = values[-self.config.history :] if len(values) else values
        slot = self._add(device_id)
        n = len(kept)
        self._history[slot, :n] = kept
        self._sorted[slot, :n] = np.sort(kept)
        self._filled[slot], self._pos[slot] = n, n % self.config.history
        self._seen[slot], self._block_n[slot] = seen, block_n
        self._block_max[slot], self._line[slot] = block_max, line
        return True

    def forget(self, device_id: str) -> None:
        """Drop the device (eviction); its slot is reused by the next new device."""
        slot = self._slots.pop(device_id, None)
        if slot is not None:
            self._free.append(slot)

    # The same over a batch: one call each per batch, for devices with at most one window in it.

    def slots(self, device_ids: Sequence[str]) -> np.ndarray:
        """Each device's slot, -1 for a device with no history yet."""
        return np.array(list(map(self._slots.get, device_ids, repeat(-1))), np.int64)

    def lines_at(self, slots: np.ndarray) -> np.ndarray:
        """``line`` of each slot (1.0 for -1)."""
        known = slots >= 0
        out = np.ones(len(slots))
        out[known] = self._columns().line[slots[known]]
        return out

    def learning_at(self, slots: np.ndarray) -> np.ndarray:
        """``learning`` of each slot (True for -1: a device not seen yet learns)."""
        if not self.config.enabled:
            return np.zeros(len(slots), bool)
        known = slots >= 0
        at, c = slots[known], self._columns()
        out = np.ones(len(slots), bool)
        out[known] = (c.seen[at] < self.config.warmup) & ((c.filled[at] < EARLY_BLOCKS) | (c.line[at] > 1.0))
        return out

    def observe_each(self, device_ids: Sequence[str], values: np.ndarray, slots: np.ndarray | None = None) -> None:
        """``observe`` each device's value; each device at most once (the order between devices is free).
        ``slots``: the devices' ``slots`` where the caller has them (a copy is changed, not them)."""
        if not self.config.enabled or not len(device_ids):
            return
        slots = self.slots(device_ids) if slots is None else slots.copy()
        for k in np.flatnonzero(slots < 0).tolist():  # new devices: rare, one at a time
            slots[k] = self._add(device_ids[k])
        values = np.asarray(values, np.float64)
        c = self._columns()
        c.seen[slots] += 1
        block_max = c.block_max[slots]
        c.block_max[slots] = np.where(values > block_max, values, block_max)  # (as ``observe``: NaN is no maximum)
        c.block_n[slots] += 1
        full = slots[c.block_n[slots] >= self.config.block]
        if len(full):
            self._close_blocks(c, full)

    def _columns(self) -> _Columns:
        """The per-slot arrays as numpy arrays on the same memory. Never kept past the call that made them:
        a typed array cannot grow (``_add``) while viewed."""
        return _Columns(
            filled=np.frombuffer(self._filled, np.int64), pos=np.frombuffer(self._pos, np.int64),
            seen=np.frombuffer(self._seen, np.int64), block_max=np.frombuffer(self._block_max, np.float64),
            block_n=np.frombuffer(self._block_n, np.int64), line=np.frombuffer(self._line, np.float64),
        )  # fmt: skip

    def _close_blocks(self, c: _Columns, slots: np.ndarray) -> None:
        """Store the finished blocks' maxima (each in place of the oldest once the history is full) and
        recompute those lines."""
        size = self.config.history
        p = c.pos[slots]
        new = c.block_max[slots].astype(np.float32)
        self._history[slots, p] = new
        c.pos[slots] = (p + 1) % size
        c.filled[slots] = n = np.minimum(c.filled[slots] + 1, size)
        # The sorted rows afresh from the histories: the same values that ``observe`` moves into place one
        # by one (equal values may swap places, which changes no line), and numpy's sort of many short rows
        # costs a fifth of moving them over arrays. A history not yet full holds its first n places (the
        # ring has not wrapped); +inf pads the rest of the row.
        width = int(n.max())  # a young history is short: only its values are sorted
        rows = self._history[slots, :width]
        if (n < width).any():
            rows[np.arange(width) >= n[:, None]] = np.inf
        rows.sort(axis=1)  # in place: a fresh temporary of this size (1 MB for 1,000 rows) costs its page faults
        self._sorted[slots, :width] = rows
        c.block_max[slots], c.block_n[slots] = -np.inf, 0
        self._recompute(c, slots, rows, n)

    def _recompute_one(self, slot: int) -> None:
        cfg = self.config
        n = self._filled[slot]
        row = self._sorted[slot]
        high, median = _quantile(row, n, cfg.quantile), _quantile(row, n, 0.5)
        target = min(high * cfg.margin, median * cfg.median_cap)
        if self._seen[slot] < cfg.warmup:
            self._line[slot] = max(1.0, target)  # free to settle while it learns
            return
        old = self._line[slot]
        target = min(max(target, old * (1 - cfg.max_step)), old * (1 + cfg.max_step))
        self._line[slot] = max(1.0, target)

    def _recompute(self, c: _Columns, slots: np.ndarray, rows: np.ndarray, n: np.ndarray) -> None:
        """``_recompute_one`` of each slot over arrays, in float64 as Python's floats and with Python's min
        and max, so both give the same line to the bit (``rows``: the slots' sorted rows, n filled)."""
        cfg = self.config
        high, median = _quantile_rows(rows, n, cfg.quantile), _quantile_rows(rows, n, 0.5)
        target = _min(high * cfg.margin, median * cfg.median_cap)
        old = c.line[slots]
        stepped = _min(_max(target, old * (1 - cfg.max_step)), old * (1 + cfg.max_step))
        target = np.where(c.seen[slots] < cfg.warmup, target, stepped)  # free to settle while it learns
        c.line[slots] = _max(1.0, target)

    def _add(self, device_id: str) -> int:
        if self._free:
            slot = self._slots[device_id] = self._free.pop()
            self._filled[slot] = self._pos[slot] = self._seen[slot] = self._block_n[slot] = 0
            self._block_max[slot], self._line[slot] = -np.inf, 1.0
            return slot
        slot = len(self._pos)
        if slot == len(self._history):
            self._history = np.concatenate([self._history, np.zeros_like(self._history)])
            self._sorted = np.concatenate([self._sorted, np.zeros_like(self._sorted)])
        self._slots[device_id] = slot
        self._filled.append(0)
        self._pos.append(0)
        self._seen.append(0)
        self._block_max.append(-np.inf)
        self._block_n.append(0)
        self._line.append(1.0)
        return slot


class _Columns(NamedTuple):
    """``AdaptiveLines``' per-slot arrays, viewed by numpy."""

    filled: np.ndarray
    pos: np.ndarray
    seen: np.ndarray
    block_max: np.ndarray
    block_n: np.ndarray
    line: np.ndarray


def _min(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Python's ``min(a, b)`` elementwise (a unless b < a), NaN included."""
    return np.where(b < a, b, a)


def _max(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Python's ``max(a, b)`` elementwise (a unless b > a), NaN included."""
    return np.where(b > a, b, a)


def _quantile_rows(rows: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """``_quantile`` of each sorted row's first n values (n >= 1), in float64."""
    at = q * (n - 1)
    lo = at.astype(np.int64)
    k = np.arange(len(rows))
    a = rows[k, lo].astype(np.float64)
    b = rows[k, np.minimum(lo + 1, n - 1)].astype(np.float64)
    return np.where(lo + 1 >= n, a, a + (b - a) * (at - lo))


def _quantile(row: np.ndarray, n: int, q: float) -> float:
    """The ``q`` quantile of the first ``n`` values of the sorted ``row`` (numpy's default, linear)."""
    at = q * (n - 1)
    lo = int(at)
    a = float(row[lo])
    return a if lo + 1 >= n else a + (float(row[lo + 1]) - a) * (at - lo)
