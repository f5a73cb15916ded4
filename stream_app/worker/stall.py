"""Noticing a partition the readings consumer has stopped reading.

On the embedded broker a partition of many one-record batches can answer every fetch with nothing
when the consumer's fetch wait is short (measured: 30,000 one-record batches, 20 ms: 2,502 read,
then nothing, no error; 100 ms and 500 ms read them all). Nothing fails, so nothing would be
logged: the watch compares each partition's position with its high watermark and calls it stalled
when what was there ``stall_after_s`` ago is still unread and the position has not moved (or only
crept, 4 or 5 records a second, while the consumer was otherwise idle: seen under load).

The embedded broker's "latest offset" is too low for multi-record batches (it answers the first
offset of the last batch + 1), so there the lag is a lower bound: a stall behind such batches can go
unseen, a false stall cannot happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Partition = tuple[str, int]


@dataclass(slots=True)
class _Progress:
    position: int  # at the last observation
    mark: int  # the high watermark when the partition was last caught up to its previous mark
    since: float  # when that mark was set
    moved: bool = False  # whether the position moved since the mark was set
    stalled: bool = False


class StallWatch:
    def __init__(self, stall_after_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._progress: dict[Partition, _Progress] = {}
        self.lag: dict[Partition, int] = {}

    def observe(
        self, positions: Mapping[Partition, int], highs: Mapping[Partition, int], *, idle: bool = False
    ) -> list[Partition]:
        """Record each assigned partition's position (next offset to read) and high watermark; return
        the partitions that have just become stalled (each is reported once until it catches up).

        Stalled: records that were there ``stall_after_s`` ago are still unread, and either the
        position has not moved at all meanwhile, or it crept while the consumer sat ``idle`` (its
        batches mostly empty: the broker is not handing over what it holds).
        """
        now = self._clock()
        for gone in set(self._progress) - set(positions):  # revoked: forget it
            self._progress.pop(gone, None)
            self.lag.pop(gone, None)
        stalled: list[Partition] = []
        for where, position in positions.items():
            high = highs.get(where, position)
            self.lag[where] = max(0, high - position)
            seen = self._progress.get(where)
            if seen is None or position >= seen.mark:
                self._progress[where] = _Progress(position, high, now)
                continue
            seen.moved = seen.moved or position != seen.position
            seen.position = position
            if seen.stalled or now - seen.since < self.stall_after_s:
                continue
            if not seen.moved or idle:
                seen.stalled = True
                stalled.append(where)
        return stalled
    def reset(self) -> None:
        """Forget every partition's progress (the consumer was rebuilt: its clock starts again)."""
        self._progress.clear()
