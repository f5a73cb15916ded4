"""``floorwatch replay``: publish a CSV recording (a time column and sensor columns) as one device."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from stream_app.errors import FloorwatchError
from stream_app.contracts import to_epoch_ms
from stream_app.lab.csv_input import read_table
from stream_app.config.settings import Settings

from .checks import RefusedReadings, check_message, check_not_future, check_sensors
from .publish import PublishStats, ReadingPublisher, paced, reading_json


class ReplayError(FloorwatchError):
    """The recording cannot be replayed as asked."""


__all__ = ["RefusedReadings", "ReplayError", "read_recording", "replay"]


def read_recording(
    path: Path, *, time_column: str | None, columns: list[str] | None, delimiter: str | None
) -> tuple[list[str], Iterator[tuple[int, np.ndarray]]]:
    """Open a CSV; return the sensor names and an iterator of (ts ms, values)."""
    try:
        header, table = read_table(path, delimiter)
    except ValueError as exc:
        raise ReplayError(str(exc)) from exc
    time_col = time_column or header[0]
    if time_col not in header:
        raise ReplayError(f"time column {time_col!r} not in {path.name} (columns: {', '.join(header)})")
    sensors = columns or [c for c in header if c != time_col and c not in ("anomaly", "changepoint", "label")]
    unknown = [c for c in sensors if c not in header]
    if unknown:
        raise ReplayError(f"column(s) {', '.join(unknown)} not in {path.name}")

    t_i, s_i = header.index(time_col), [header.index(c) for c in sensors]

    def rows() -> Iterator[tuple[int, np.ndarray]]:
        for line, row in table:
            try:
                ts = to_epoch_ms(_number_or_text(row[t_i]))
                yield ts, np.array([float(row[i]) for i in s_i])
            except (ValueError, TypeError, IndexError) as exc:
                raise ReplayError(f"{path.name} line {line}: {exc}") from exc

    return sensors, rows()


def replay(
    settings: Settings,
    path: Path,
    device_id: str,
    *,
    speed: float,
    time_column: str | None = None,
    columns: list[str] | None = None,
    delimiter: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PublishStats:
    """Publish a recording at ``speed`` times its own clock (0: as fast as possible); ``on_progress(sent,
    total)`` after each reading."""
    sensors, rows = read_recording(path, time_column=time_column, columns=columns, delimiter=delimiter)
    # Everything is checked before anything is published: a refused recording publishes nothing.
    check_message(reading_json(device_id, 0, dict.fromkeys(sensors or ["none"], 0.0)), f"device {device_id!r}")
    check_sensors(settings, [device_id], sensors, path.name)
    recording = list(rows)
    payloads = []
    for line, (ts, values) in enumerate(recording, start=2):
        payload = reading_json(device_id, ts, dict(zip(sensors, values.tolist())))
        check_message(payload, f"{path.name} line {line}")
        check_not_future(settings, ts, f"{path.name} line {line}")
        payloads.append(payload)
    publisher = ReadingPublisher(settings)
    stats = PublishStats(last_ts_ms={})
    for (ts, _), payload in zip(paced(recording, speed), payloads):
        publisher.send(device_id, payload)
        publisher.poll()
        stats.messages += 1
        stats.readings += 1
        stats.last_ts_ms[device_id] = ts
        if on_progress is not None:
            on_progress(stats.readings, len(payloads))
    publisher.flush()
    return stats


def _number_or_text(value: str) -> object:
    try:
        return float(value)
    except ValueError:
        return value.replace(" ", "T", 1) if " " in value and "T" not in value else value
