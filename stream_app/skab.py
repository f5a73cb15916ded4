"""Labelled CSV recordings, and the SKAB benchmark's layout and protocol.

SKAB (Skoltech Anomaly Benchmark) keeps one ``;``-separated CSV per experiment with a ``datetime``
column, eight sensor columns and an ``anomaly`` label. Its protocol: in each labelled file the first
400 rows train that file's model and threshold, the rest are test rows, and the metrics are computed
over all test rows of all files together.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contracts import to_epoch_ms

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
) -> LabelledSeries:
    """A CSV recording with a 0/1 label column; features default to every other numeric column."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    sep = delimiter or (";" if text[:4096].count(";") > text[:4096].count(",") else ",")
    reader = csv.reader(text.splitlines(), delimiter=sep)
    header = next(reader, None)
    if not header:
        raise ValueError(f"{path} has no header row")
    time_col = time_column or header[0]
    for name in (time_col, label_column, *(features or [])):
        if name not in header:
            raise ValueError(f"column {name!r} not in {path.name} (columns: {', '.join(header)})")
    names = features or [c for c in header if c not in (time_col, label_column) and c not in _NOT_SENSORS]
    t_i, l_i, f_i = header.index(time_col), header.index(label_column), [header.index(c) for c in names]
    ts, values, labels = [], [], []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            raw_ts = row[t_i]
            ts.append(to_epoch_ms(float(raw_ts) if _is_number(raw_ts) else raw_ts))
            values.append([float(row[i]) for i in f_i])
            labels.append(float(row[l_i]) > 0.5)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{path.name} line {line}: {exc}") from exc
    if not ts:
        raise ValueError(f"{path} has no data rows")
    return LabelledSeries(
        device_id=device_id or _device_id(path),
        features=names,
        ts=np.asarray(ts, np.int64),
        values=np.asarray(values, np.float32),
        labels=np.asarray(labels, bool),
        train_rows=train_rows,
    )


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


def _device_id(path: Path) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in path.stem) or "device"
