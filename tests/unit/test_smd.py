"""The SMD loader against the real data beside the repo (``../shared/data/smd``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from stream_app.lab.quality import best_f1
from stream_app.lab.smd import SMD_FEATURES, load_smd, read_smd, smd_files

SMD = Path(os.environ.get("FLOORWATCH_SMD_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "smd"))
needs_smd = pytest.mark.skipif(not SMD.is_dir(), reason=f"SMD data not found at {SMD}")


@needs_smd
def test_machines_come_in_a_stable_order_and_can_be_chosen() -> None:
    assert [p.name for p in smd_files(SMD)] == [
        f"machine-{m}.csv.gz" for m in ("1-6", "1-7", "2-1", "2-7", "3-3", "3-4")
    ]
    assert [p.name for p in smd_files(SMD, ["machine-3-4", "machine-1-6"])] == ["machine-3-4.csv.gz", "machine-1-6.csv.gz"]
    with pytest.raises(ValueError, match="no SMD file for machine-9-9"):
        smd_files(SMD, ["machine-9-9"])


@needs_smd
def test_a_machine_matches_its_provenance() -> None:
    # PROVENANCE.md: machine-2-7 has 23,696 train rows, 23,696 test rows, 417 anomalous in 20 segments.
    s = read_smd(SMD / "machine-2-7.csv.gz")
    assert s.device_id == "machine-2-7" and s.features == SMD_FEATURES and len(SMD_FEATURES) == 38
    assert s.train_rows == 23_696 and len(s.ts) - s.train_rows == 23_696
    assert s.training_anomalies == 0  # the train part is unlabelled
    test = s.labels[s.train_rows :]
    assert int(test.sum()) == 417
    assert int(np.sum(np.diff(test.astype(np.int8)) == 1)) + int(test[0]) == 20
    assert set(np.diff(s.ts).tolist()) == {60_000}  # one row a minute, test straight after train
    assert s.values.min() >= 0.0 and s.values.max() <= 1.0


@needs_smd
def test_all_six_machines_load() -> None:
    series = load_smd(SMD)
    anomalous = [int(s.labels[s.train_rows :].sum()) for s in series]
    assert anomalous == [3708, 2398, 1170, 417, 632, 977]


def test_a_folder_without_smd_files_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no SMD files"):
        smd_files(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        smd_files(tmp_path / "missing")


def test_best_f1_picks_the_threshold_with_the_best_f1() -> None:
    truth = np.array([0, 0, 1, 1, 0, 1, 0, 0], bool)
    score = np.array([0.1, 0.2, 0.9, 0.8, 0.85, 0.3, 0.25, np.nan])
    best = best_f1(truth, score)
    # >= 0.8 flags 3 points, 2 right: F1 2*2/(4+1+1) = 0.667; >= 0.3 flags 4, 3 right: 6/(6+1) = 0.857;
    # >= 0.25 flags 5, 3 right: 6/(6+2) = 0.75.
    assert best.threshold == 0.3 and best.f1 == pytest.approx(6 / 7)
    assert best.precision == pytest.approx(0.75) and best.recall == pytest.approx(1.0)
    assert best_f1(truth, np.where(truth, 2.0, 1.0)).f1 == 1.0
    assert best_f1(np.zeros(3, bool), np.ones(3)).f1 == 0.0
