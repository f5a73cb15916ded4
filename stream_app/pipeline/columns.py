"""A batch of readings as columns: device ids, timestamps and value dicts, one entry a reading.

The hot path (bulk_decode.py -> detector.py) passes these instead of one pydantic ``Reading`` per
reading: building and reading those objects cost more than deciding what to do with them. It is
still a ``Sequence[Reading]`` for callers that want objects (the drift watch samples a few, a
shadow model or a learning group iterates them): those are made on demand and kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from stream_app.contracts import Reading


class ReadingColumns(Sequence[Reading]):
    """Readings in columns; ``values[i]`` is the reading's own (validated) dict, never copied."""

    __slots__ = ("device_ids", "ts", "values", "_readings")

    def __init__(self, device_ids: list[str], ts: list[int], values: list[dict[str, float]], readings: list[Reading | None] | None = None) -> None:
        self.device_ids = device_ids
        self.ts = ts
        self.values = values
        self._readings = readings

    @classmethod
    def of(cls, readings: Sequence[Reading]) -> ReadingColumns:
        """Columns of existing readings; indexing gives back the very same objects."""
        if isinstance(readings, ReadingColumns):
            return readings
        items = list(readings)
        return cls([r.device_id for r in items], [r.ts for r in items], [r.values for r in items], list(items))

    def take(self, rows: list[int]) -> ReadingColumns:
        """The readings at ``rows``, in that order."""
        kept = self._readings
        return ReadingColumns(
            [self.device_ids[i] for i in rows], [self.ts[i] for i in rows], [self.values[i] for i in rows],
            None if kept is None else [kept[i] for i in rows],
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.device_ids)

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Reading]: ...
    def __getitem__(self, i: int | slice) -> Reading | Sequence[Reading]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if self._readings is None:
            self._readings = [None] * len(self.device_ids)
        reading = self._readings[i]
        if reading is None:
            # Already validated (bulk_decode.py checks what the contract checks): no second validation.
            reading = self._readings[i] = Reading.model_construct(device_id=self.device_ids[i], ts=self.ts[i], values=self.values[i])
        return reading

    def __iter__(self) -> Iterator[Reading]:
        return (self[i] for i in range(len(self.device_ids)))
