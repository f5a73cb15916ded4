"""Labelled CSV recordings, and the SKAB benchmark's layout and protocol.

SKAB (Skoltech Anomaly Benchmark) keeps one ``;``-separated CSV per experiment with a ``datetime``
column, eight sensor columns and an ``anomaly`` label. Its protocol: in each labelled file the first
400 rows train that file's model and threshold, the rest are test rows, and the metrics are computed
over all test rows of all files together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone
from pathlib import Path

import numpy as np

from stream_app.contracts import to_epoch_ms
from stream_app.lab.csv_input import read_table

SKAB_TRAIN_ROWS = 400
SKAB_FOLDERS = ("valve1", "valve2", "other")
SKAB_FEATURES = [
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
]
# Not sensors: never taken as features when the caller names none.
_NOT_SENSORS = {"anomaly", "changepoint", "label"}


@dataclass(slots=True)
class LabelledSeries:
    """One device's readings in time order, with a ground-truth label per reading.

    ``train_rows`` leading rows are training data (a model may learn from them; they are fed to the
    detector to fill its window but are not scored).
    """

    device_id: str
    features: list[str]
    ts: np.ndarray  # (n,) int64 epoch ms, strictly increasing
    values: np.ndarray  # (n, F) float32
    labels: np.ndarray  # (n,) bool
    train_rows: int = 0
    # False: the source had no labels (every label False); metrics that need labels do not apply.
    labelled: bool = True
    # What its labelled anomalies are, where the source says (the simulator's failure kinds): plot titles.
    failures: tuple[str, ...] = ()
    # What reading the source repaired (blank values, repeated times): warning lines of the report.
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.ts)
        if self.values.shape != (n, len(self.features)) or self.labels.shape != (n,):
            raise ValueError(f"{self.device_id}: ts, values and labels disagree in length")
        if n > 1 and np.any(np.diff(self.ts) <= 0):
            raise ValueError(f"{self.device_id}: timestamps must be strictly increasing")

    @property
    def training_anomalies(self) -> int:
        """Training rows labelled anomalous: a model trained on them learns that behaviour as normal."""
        return int(self.labels[: self.train_rows].sum())


def read_labelled_csv(
    path: Path,
    *,
    label_column: str = "anomaly",
    time_column: str | None = None,
    features: list[str] | None = None,
    delimiter: str | None = None,
    device_id: str | None = None,
    train_rows: int = 0,
    labels_optional: bool = False,
) -> LabelledSeries:
    """A CSV recording (plain or ``.gz``) with a 0/1 label column; features default to every other numeric column.

    ``labels_optional``: a file without ``label_column`` is read as unlabelled (every label False,
    ``labelled`` False). The delimiter is sniffed when not given; times may be ISO-8601, a common
    date-time text (``2026-01-01 00:05``, ``01/31/2026 10:00``) or epoch seconds, ms, us or ns
    (see ``parse_times``); any sampling interval.
    """
    header, rows = read_table(path, delimiter)
    time_col = time_column or header[0]
    labelled = label_column in header or not labels_optional
    for name in (time_col, *([label_column] if labelled else []), *(features or [])):
        if name not in header:
            raise ValueError(f"column {name!r} not in {path.name} (columns: {', '.join(header)})")
    names = features or [c for c in header if c not in (time_col, label_column) and c not in _NOT_SENSORS]
    if not names:
        raise ValueError(f"{path.name} has no sensor columns (columns: {', '.join(header)})")
    t_i, f_i = header.index(time_col), [header.index(c) for c in names]
    l_i = header.index(label_column) if labelled else None
    raw_ts = [row[t_i] if t_i < len(row) else "" for _, row in rows]
    if not raw_ts:
        raise ValueError(f"{path} has no data rows")
    # Real recordings have gaps: a blank, text or non-finite cell is not a reading of that sensor. The row
    # stays (a scorer aligns its results with the file row by row) and holds the sensor's last value.
    values = np.array([[_number(row[i]) if i < len(row) else np.nan for i in f_i] for _, row in rows], np.float64)
    labels = np.array([l_i is not None and l_i < len(row) and _number(row[l_i]) > 0.5 for _, row in rows], bool)
    values, names, notes = _fill_gaps(values, names, named=features is not None, file=path.name)
    try:
        ts = parse_times(raw_ts)
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from exc
    ts, moved = _increasing(ts)
    if moved:
        notes.append(
            f"{path.name}: {moved} row(s) not later than the row before (repeated or out-of-order times) "
            "are scored in file order, 1 ms after it"
        )
    return LabelledSeries(
        device_id=device_id or device_id_of(path),
        features=names,
        ts=ts,
        values=values.astype(np.float32),
        labels=labels,
        train_rows=train_rows,
        labelled=labelled,
        notes=tuple(notes),
    )


def _number(text: str) -> float:
    """The cell as a finite float, NaN when it is not one (blank, text, inf); a decimal comma reads as a point."""
    try:
        value = float(text)
    except ValueError:
        if "," not in text or "." in text:
            return np.nan
        try:  # "1,5" from a ';'-separated export: a comma in a cell is no delimiter there
            value = float(text.replace(",", ".", 1))
        except ValueError:
            return np.nan
    return value if np.isfinite(value) else np.nan


def _fill_gaps(values: np.ndarray, names: list[str], *, named: bool, file: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Each NaN takes its column's last value (leading ones the first); returns the values, the columns kept
    and the notes. A column with no number at all is not a sensor: dropped unless the caller named it."""
    notes = []
    empty = np.isnan(values).all(axis=0)
    if empty.any():
        dropped = [n for n, e in zip(names, empty) if e]
        if named or empty.all():
            raise ValueError(f"{file}: column(s) {', '.join(dropped)} hold no numbers")
        notes.append(f"{file}: column(s) {', '.join(dropped)} hold no numbers; not read as sensors")
        values, names = values[:, ~empty], [n for n, e in zip(names, empty) if not e]
    gaps = np.isnan(values)
    if gaps.any():
        n = len(values)
        at = np.where(gaps, -1, np.arange(n)[:, None])
        last = np.maximum.accumulate(at, axis=0)
        first = np.argmax(~gaps, axis=0)  # every column has a number (above)
        last = np.where(last < 0, first, last)
        values = np.take_along_axis(values, last, axis=0)
        notes.append(f"{file}: {int(gaps.any(axis=1).sum())} row(s) with a blank or non-numeric value hold the sensor's last value")
    return values, names, notes


def _increasing(ts: np.ndarray) -> tuple[np.ndarray, int]:
    """Times made strictly increasing in file order (a row not later than the one before moves to 1 ms
    after it); returns them and how many moved."""
    if len(ts) < 2 or bool((np.diff(ts) > 0).all()):
        return ts, 0
    # t[i] = max(ts[i], t[i-1] + 1) for all i at once: with u = ts - i, t - i is u's running maximum.
    steps = np.arange(len(ts), dtype=np.int64)
    fixed = np.maximum.accumulate(ts - steps) + steps
    return fixed, int((fixed != ts).sum())


# Epoch numbers: the unit is read from the magnitude of the first one. Below 1e9 they stay
# milliseconds (the 1970s), as numbers were read before; 1e9-1e11 are seconds (2001-5138).
_EPOCH_UNITS_MS = ((1e9, 1.0), (1e11, 1000.0), (1e14, 1.0), (1e17, 1e-3), (float("inf"), 1e-6))


def parse_times(raw: list[str]) -> np.ndarray:
    """Time texts to int64 epoch ms: all numbers (epoch s, ms, us or ns, by magnitude) or all date-times.

    Date-times are ISO-8601 where they can be (fast), else whatever ``dateutil`` reads (month first
    when ambiguous); without a zone they are UTC.
    """
    if _is_number(raw[0]):
        try:
            numbers = np.asarray([float(t) for t in raw], float)
        except ValueError as exc:
            raise ValueError(f"time {exc}: the first time is a number, so all must be") from exc
        first = abs(numbers[0])
        to_ms = next(factor for limit, factor in _EPOCH_UNITS_MS if first < limit)
        return np.asarray([to_epoch_ms(float(v)) for v in numbers * to_ms], np.int64)
    return np.asarray([_date_time_ms(t) for t in raw], np.int64)


def _date_time_ms(text: str) -> int:
    try:
        return to_epoch_ms(text)
    except ValueError:
        pass
    from dateutil import parser

    try:
        parsed = parser.parse(text)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"time {text[:40]!r} is neither a number nor a date-time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return to_epoch_ms(int(parsed.timestamp() * 1000))


def skab_files(root: Path) -> list[Path]:
    """The 34 labelled SKAB files in a stable order (valve1, valve2, other; numerically)."""
    if not root.is_dir():
        raise ValueError(f"SKAB folder {root} not found (expected valve1/, valve2/, other/ inside)")
    files = [
        p
        for folder in SKAB_FOLDERS
        for p in sorted((root / folder).glob("*.csv"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    ]
    if not files:
        raise ValueError(f"no labelled SKAB files under {root} ({', '.join(SKAB_FOLDERS)})")
    return files


def load_skab(root: Path, *, train_rows: int = SKAB_TRAIN_ROWS, features: list[str] | None = None) -> list[LabelledSeries]:
    """Every labelled SKAB file as one device (``valve1-0``, ...), first ``train_rows`` rows for training.

    ``features``: a subset of the eight sensors (default: all of them), the same for every file.
    """
    unknown = sorted(set(features or ()) - set(SKAB_FEATURES))
    if unknown:
        raise ValueError(f"not SKAB sensor(s): {', '.join(unknown)} (sensors: {', '.join(SKAB_FEATURES)})")
    series = []
    for path in skab_files(root):
        s = read_labelled_csv(
            path, label_column="anomaly", time_column="datetime", features=features or SKAB_FEATURES, delimiter=";",
            device_id=f"{path.parent.name}-{path.stem}", train_rows=train_rows,
        )  # fmt: skip
        if len(s.ts) <= train_rows:
            raise ValueError(f"{path} has {len(s.ts)} rows, not more than the {train_rows} training rows")
        series.append(s)
    return series


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def device_id_of(path: Path) -> str:
    """A file's device id: its name without the suffix, other characters than letters, digits and ``._-`` as ``-``."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in path.stem) or "device"
