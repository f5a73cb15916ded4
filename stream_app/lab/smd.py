"""The Server Machine Dataset (SMD) as kept in ``../shared/data/smd``, and its protocol.

One gzip-compressed CSV per machine: ``timestamp`` (synthetic, one row a minute), 38 metrics
``m00``..``m37``, ``split`` (``train`` rows first, then ``test``) and ``anomaly`` (0 for every train
row: the train part is unlabelled, not known to be clean). The protocol (``PROVENANCE.md`` there):
each machine trains its own model on its train part only, and its test part is scored causally and
point-wise.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from stream_app.contracts import to_epoch_ms
from stream_app.lab.skab import LabelledSeries

SMD_FEATURES = [f"m{i:02d}" for i in range(38)]
SMD_MACHINES = ("machine-1-6", "machine-1-7", "machine-2-1", "machine-2-7", "machine-3-3", "machine-3-4")


def smd_files(root: Path, machines: list[str] | None = None) -> list[Path]:
    """The machines' files in a stable order; every machine in the folder when none are named."""
    if not root.is_dir():
        raise ValueError(f"SMD folder {root} not found (expected machine-*.csv.gz inside)")
    found = {p.name.removesuffix(".csv.gz"): p for p in root.glob("machine-*.csv.gz")}
    if not found:
        raise ValueError(f"no SMD files (machine-*.csv.gz) under {root}")
    if machines is None:
        return [found[m] for m in sorted(found, key=_machine_order)]
    unknown = [m for m in machines if m not in found]
    if unknown:
        raise ValueError(f"no SMD file for {', '.join(unknown)} under {root} (machines: {', '.join(sorted(found, key=_machine_order))})")
    return [found[m] for m in machines]


def read_smd(path: Path) -> LabelledSeries:
    """One machine: its train rows first (``train_rows``, unlabelled), then its labelled test rows."""
    try:
        with gzip.open(path, "rt", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    expected = ["timestamp", *SMD_FEATURES, "split", "anomaly"]
    if header != expected:
        raise ValueError(f"{path.name}: unexpected columns (want timestamp, m00..m37, split, anomaly)")
    if not body:
        raise ValueError(f"{path} has no data rows")
    try:
        ts = np.fromiter((to_epoch_ms(r[0]) for r in body), np.int64, len(body))
        values = np.array([r[1:39] for r in body], np.float32)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{path.name}: {exc}") from exc
    split = np.array([r[39] for r in body])
    is_train = split == "train"
    train_rows = int(is_train.sum())
    if not is_train[:train_rows].all() or not (split[train_rows:] == "test").all():
        raise ValueError(f"{path.name}: rows must be all 'train' then all 'test'")
    labels = np.array([r[40] == "1" for r in body], bool)
    return LabelledSeries(
        device_id=path.name.removesuffix(".csv.gz"),
        features=list(SMD_FEATURES),
        ts=ts,
        values=values,
        labels=labels,
        train_rows=train_rows,
    )


def load_smd(root: Path, machines: list[str] | None = None) -> list[LabelledSeries]:
    """Every (or the named) SMD machine as one series, train part first."""
    return [read_smd(p) for p in smd_files(root, machines)]


def _machine_order(name: str) -> tuple[int, ...]:
    # machine-1-10 after machine-1-9
    return tuple(int(p) if p.isdigit() else 0 for p in name.split("-")[1:])
