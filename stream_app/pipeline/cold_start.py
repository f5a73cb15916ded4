"""Cold start: an asset group with no model yet learns one from its own stream.

Until its first model is trained the group's readings are kept, not scored: each device's readings
in time order, cut where the device went silent for longer than the window's gap (``max_gap_ms``),
so that training windows never span a gap. The sensors a group is trained on are those of the first
reading of the group; a later reading without one of them is refused (dead-lettered) as it would
be by a trained model. Once the group has ``min_readings`` readings over ``min_span_s`` of stream
time, the worker trains a model on them (``worker/cold_start.py``) and installs it like a promoted
version; from then on the group is scored, with each device's first windows a warm-up of its line
as usual (``lines.py``).

What a cold start cannot know: whether the stream it learns from was healthy. A device already
failing while the group learns teaches its fault as normal; operators who know better train first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stream_app.contracts import Reading, iso_ms
from stream_app.pipeline.detector import Detection, DeviceStatus, Refused


@dataclass(frozen=True, slots=True)
class ColdStartConfig:
    min_readings: int = 5_000  # enough for ~1,000 held-out windows: the level check's own minimum
    min_span_s: float = 3600.0  # and at least an hour of the stream, not one moment of it
    max_readings: int = 50_000  # kept per group (the oldest runs are dropped first)
    max_gap_ms: int = 60_000
    max_future_ms: int = 300_000


@dataclass(slots=True)
class _Run:
    start_ms: int
    last_ms: int
    rows: list[np.ndarray]


class Learner:
    """An asset group with no model: keeps its readings until there are enough to train one."""

    def __init__(self, group: str, config: ColdStartConfig = ColdStartConfig()) -> None:
        self.group = group
        self.config = config
        self.features: list[str] | None = None
        self._open: dict[str, _Run] = {}  # each device's current run of readings
        self._closed: list[np.ndarray] = []  # finished runs, (n, F) each, oldest first
        self.readings = 0  # kept now (dropped ones not counted)
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    @property
    def model_version(self) -> str:
        return f"{self.group}/learning"

    @property
    def ready(self) -> bool:
        """Enough readings, over enough stream time, to train the group's first model."""
        if self.first_ms is None or self.last_ms is None:
            return False
        span_s = (self.last_ms - self.first_ms) / 1000
        return self.readings >= self.config.min_readings and span_s >= self.config.min_span_s

    def series(self, min_length: int = 1) -> list[np.ndarray]:
        """Each run of readings kept so far, (n, F) float32, at least ``min_length`` long."""
        runs = self._closed + [np.stack(run.rows) for run in self._open.values() if run.rows]
        return [r for r in runs if len(r) >= min_length]

    def process(self, readings: Sequence[Reading], *, now_ms: int) -> Detection:
        """Keep the usable readings; none is scored. Devices report as normal, with no score yet."""
        out = Detection()
        if self.features is None and readings:
            self.features = sorted(readings[0].values)
        features = self.features or []
        for reading in readings:
            missing = [f for f in features if f not in reading.values]
            if missing:
                out.refused.append(Refused(reading, f"missing sensor(s) {', '.join(missing)} the group is learning"))
                continue
            if reading.ts > now_ms + self.config.max_future_ms:
                out.refused.append(Refused(reading, f"timestamp {iso_ms(reading.ts)} is in the future"))
                continue
            run = self._open.get(reading.device_id)
            if run is not None and reading.ts <= run.last_ms:
                if reading.ts == run.last_ms:
                    out.duplicates += 1
                else:
                    out.refused.append(Refused(reading, "out of order: older than the device's last reading"))
                continue
            if run is None or reading.ts - run.last_ms > self.config.max_gap_ms:
                if run is not None and run.rows:
                    self._closed.append(np.stack(run.rows))
                run = self._open[reading.device_id] = _Run(reading.ts, reading.ts, [])
            run.rows.append(np.array([reading.values[f] for f in features], np.float32))
            run.last_ms = reading.ts
            self.readings += 1
            self.first_ms = reading.ts if self.first_ms is None else min(self.first_ms, reading.ts)
            self.last_ms = reading.ts if self.last_ms is None else max(self.last_ms, reading.ts)
            status = out.statuses.get(reading.device_id)
            if status is None:
                out.statuses[reading.device_id] = DeviceStatus(reading.device_id, reading.ts, "normal", values=reading.values)
            else:
                status.last_reading_ms, status.values = reading.ts, reading.values
        self._bound()
        return out

    def _bound(self) -> None:
        # Memory stays bounded on a busy group: the oldest finished runs go first, then the oldest
        # readings of the longest open run (devices that never pause have no finished runs).
        while self.readings > self.config.max_readings and self._closed:
            self.readings -= len(self._closed.pop(0))
        while self.readings > self.config.max_readings:
            run = max(self._open.values(), key=lambda r: len(r.rows))
            cut = min(self.readings - self.config.max_readings, len(run.rows))
            del run.rows[:cut]
            self.readings -= cut
