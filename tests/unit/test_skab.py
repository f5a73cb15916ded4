"""The SKAB loader against the real data beside the repo (``../shared/data/skab``), and labelled CSVs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from stream_app.lab.evaluate import training_warnings
from stream_app.lab.skab import SKAB_FEATURES, SKAB_TRAIN_ROWS, load_skab, read_labelled_csv

SKAB = Path(os.environ.get("FLOORWATCH_SKAB_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "skab"))
needs_skab = pytest.mark.skipif(not SKAB.is_dir(), reason=f"SKAB data not found at {SKAB}")


@needs_skab
def test_skab_protocol_figures_match_its_provenance() -> None:
    series = load_skab(SKAB)
    assert len(series) == 34
    assert series[0].device_id == "valve1-0" and series[-1].device_id == "other-14"
    test_labels = np.concatenate([s.labels[SKAB_TRAIN_ROWS:] for s in series])
    # PROVENANCE.md: 23,801 test rows in all, 53.7% anomalous.
    assert len(test_labels) == 23_801
    assert round(test_labels.mean(), 3) == 0.537
    assert all(s.train_rows == SKAB_TRAIN_ROWS and s.features == SKAB_FEATURES for s in series)


@needs_skab
def test_only_other_2_trains_on_rows_labelled_anomalous() -> None:
    # Its fault starts at row 104 and ends at 487, so SKAB's protocol trains its model on the fault.
    assert training_warnings(load_skab(SKAB)) == [
        "other-2: 296 of its 400 training rows are labelled anomalous; its model learns that behaviour as normal"
    ]


@needs_skab
def test_skab_sensor_subset_is_the_same_for_every_file() -> None:
    chosen = ["Accelerometer1RMS", "Volume Flow RateRMS"]
    series = load_skab(SKAB, features=chosen)
    assert all(s.features == chosen and s.values.shape[1] == 2 for s in series)
    with pytest.raises(ValueError, match="not SKAB sensor"):
        load_skab(SKAB, features=["Accelerometer1RMS", "Humidity"])


def test_labelled_csv_with_commas_epoch_times_and_chosen_columns(tmp_path: Path) -> None:
    path = tmp_path / "line 3.csv"
    path.write_text("t,a,b,label\n1000,1.0,2.0,0\n2000,1.5,2.5,1\n3000,1.25,2.25,0\n")
    s = read_labelled_csv(path, label_column="label", features=["b"])
    assert s.device_id == "line-3"
    assert s.features == ["b"] and s.values[:, 0].tolist() == [2.0, 2.5, 2.25]
    assert s.ts.tolist() == [1000, 2000, 3000] and s.labels.tolist() == [False, True, False]


def test_labelled_csv_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("t,a,label\n1000,1.0,0\n2000,oops,1\n")
    # A cell that is not a number is a gap, not an error: the row stays with the sensor's last value.
    s = read_labelled_csv(path, label_column="label")
    assert s.values[:, 0].tolist() == [1.0, 1.0] and s.labels.tolist() == [False, True] and len(s.notes) == 1
    with pytest.raises(ValueError, match="column 'anomaly' not in x.csv"):
        read_labelled_csv(path)
    path.write_text("t,a,label\n1000,n/a,0\n2000,oops,1\n")
    with pytest.raises(ValueError, match="column\\(s\\) a hold no numbers"):
        read_labelled_csv(path, label_column="label")
