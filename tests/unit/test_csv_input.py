"""CSV recordings as `floorwatch evaluate --csv` reads them: any delimiter, time format and rate, labels or none."""

from __future__ import annotations

import dataclasses
import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from stream_app.pipeline.detector import Detector
from stream_app.lab.evaluate import EvaluateOptions, Model, evaluate_shared, print_report, sampling_gap_s, unlabelled_caveats
from stream_app.lab.csv_input import sniff_delimiter
from stream_app.lab.skab import parse_times, read_labelled_csv

from tests.support.builders import episode_detector

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    "times",
    [
        ["2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"],
        ["2026-01-01 00:00:00", "2026-01-01 00:05:00"],
        ["2026-01-01T01:00:00+01:00", "2026-01-01T01:05:00+01:00"],
        ["01/01/2026 00:00", "01/01/2026 00:05"],
        ["Jan 1 2026 12:00AM", "Jan 1 2026 12:05AM"],
        ["1767225600", "1767225900"],  # epoch seconds
        ["1767225600.0", "1767225900.0"],
        ["1767225600000", "1767225900000"],  # ms
        ["1767225600000000", "1767225900000000"],  # us
        ["1767225600000000000", "1767225900000000000"],  # ns
    ],
)
def test_times_in_any_common_format_become_epoch_ms(times: list[str]) -> None:
    assert parse_times(times).tolist() == [T0_MS, T0_MS + 300_000]


def test_small_numbers_stay_milliseconds_as_before() -> None:
    assert parse_times(["1000", "2000"]).tolist() == [1000, 2000]


def test_a_time_that_is_neither_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="neither a number nor a date-time"):
        parse_times(["2026-01-01T00:00:00Z", "soon"])


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_the_delimiter_is_sniffed(sep: str) -> None:
    sample = sep.join(["timestamp", "value", "label"]) + "\n" + sep.join(["2026-01-01 00:00:00", "1.5", "0"]) + "\n"
    assert sniff_delimiter(sample) == sep


def test_a_file_without_labels_reads_as_unlabelled_when_labels_are_optional(tmp_path: Path) -> None:
    path = tmp_path / "pump.csv"
    path.write_text("timestamp;value\n2026-01-01 00:00:00;1,5\n2026-01-01 00:05:00;2\n")  # a decimal comma too
    s = read_labelled_csv(path, labels_optional=True)
    assert s.values[:, 0].tolist() == [1.5, 2.0] and not s.notes
    assert not s.labelled and s.labels.tolist() == [False, False]
    assert s.features == ["value"] and s.ts.tolist() == [T0_MS, T0_MS + 300_000]
    with pytest.raises(ValueError, match="column 'anomaly' not in pump.csv"):
        read_labelled_csv(path)


def test_a_labelled_gzip_file_reads_its_labels(tmp_path: Path) -> None:
    path = tmp_path / "m.csv.gz"
    path.write_bytes(gzip.compress(b"t,v,anomaly\n1767225600,1,0\n1767225660,2,1\n"))
    s = read_labelled_csv(path, labels_optional=True)
    assert s.labelled and s.labels.tolist() == [False, True] and s.ts.tolist() == [T0_MS, T0_MS + 60_000]


def _minutes(n: int, every_s: int) -> np.ndarray:
    return T0_MS + np.arange(n, dtype=np.int64) * every_s * 1000


def test_window_restarts_follow_the_slowest_sampling_rate() -> None:
    from stream_app.lab.skab import LabelledSeries

    fast = LabelledSeries("a", ["x"], _minutes(10, 60), np.zeros((10, 1), np.float32), np.zeros(10, bool))
    slow = LabelledSeries("b", ["x"], _minutes(10, 300), np.zeros((10, 1), np.float32), np.zeros(10, bool))
    assert sampling_gap_s([fast], 60.0) == 180.0
    assert sampling_gap_s([fast, slow], 60.0) == 900.0
    assert sampling_gap_s([LabelledSeries("c", ["x"], _minutes(10, 1), np.zeros((10, 1), np.float32), np.zeros(10, bool))], 60.0) == 60.0


def test_an_unlabelled_file_reports_label_figures_as_not_applicable(tmp_path: Path) -> None:
    path = tmp_path / "line.csv"
    rows = [f"{T0_MS // 1000 + 300 * i},{5.0 if 10 <= i < 20 else 0.0}" for i in range(60)]
    path.write_text("time,x\n" + "\n".join(rows) + "\n")
    series = [read_labelled_csv(path, labels_optional=True)]
    # A reading every 5 minutes: windows restart after 15 minutes of silence, not the 60 s default.
    d = episode_detector()
    detector = Detector(d.bundle, d.scorer, dataclasses.replace(d.config, max_gap_ms=int(sampling_gap_s(series, 60.0) * 1000)))
    report, _ = evaluate_shared(Model(detector), series, EvaluateOptions(), source="csv: line.csv")
    report = unlabelled_caveats(report, series)
    assert not report.labelled and report.best_f1 is None
    assert report.events.episodes == report.events.false_episodes == 1
    assert report.point.fp > 0 and report.point.tp == 0
    out = io.StringIO()
    print_report(report, Console(file=out, width=200))
    text = out.getvalue()
    assert "point-wise F1" in text and text.count("n/a (no labels)") >= 6
    assert "no labels in line" in text


def test_a_sample_cut_mid_line_still_sniffs() -> None:
    rows = "".join(f"2026-01-01 00:{m:02d}:00;{m}.5;0\n" for m in range(40))
    assert sniff_delimiter(("timestamp;value;label\n" + rows)[:300]) == ";"


def test_blank_and_text_cells_hold_the_sensors_last_value_and_every_row_stays(tmp_path: Path) -> None:
    path = tmp_path / "gappy.csv"
    path.write_text(
        "timestamp,a,b,note\n"
        "2026-01-01 00:00:00,,5,x\n"  # a leading blank takes the first value after it
        "2026-01-01 00:05:00,1,nan,y\n"
        "2026-01-01 00:10:00,2,inf,z\n"
        "2026-01-01 00:15:00,n/a,6,w\n"
        "2026-01-01 00:20:00,3\n"  # a short row
    )
    s = read_labelled_csv(path, labels_optional=True)
    assert s.features == ["a", "b"]  # 'note' holds no numbers: not a sensor
    assert s.values.tolist() == [[1, 5], [1, 5], [2, 5], [2, 6], [3, 6]]
    assert len(s.ts) == 5 and any("5 row(s) with a blank" in n for n in s.notes)
    assert any("note hold no numbers" in n for n in s.notes)
    with pytest.raises(ValueError, match="note hold no numbers"):
        read_labelled_csv(path, labels_optional=True, features=["a", "note"])  # named: an error, not a guess


def test_repeated_and_backward_times_are_scored_in_file_order_a_millisecond_apart(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("t,v\n1767225600,1\n1767225900,2\n1767225900,3\n1767225600,4\n1767226500,5\n")
    s = read_labelled_csv(path, labels_optional=True)
    assert s.ts.tolist() == [T0_MS, T0_MS + 300_000, T0_MS + 300_001, T0_MS + 300_002, T0_MS + 900_000]
    assert s.values[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert any("2 row(s) not later than the row before" in n for n in s.notes)


def test_a_corpus_kept_in_subfolders_is_found_and_shared_names_stay_apart(tmp_path: Path) -> None:
    from stream_app.lab.evaluate import csv_files, device_names

    for sub, name in (("realA", "a.csv"), ("realB", "a.csv"), ("realB", "b.csv.gz")):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / name).write_text("")
    paths = csv_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["realA/a.csv", "realB/a.csv", "realB/b.csv.gz"]
    assert list(device_names(paths).values()) == ["realA-a", "realB-a", "b.csv"]
    (tmp_path / "top.csv").write_text("")  # files at the top: only those (results kept in a subfolder stay out)
    assert csv_files(tmp_path) == [tmp_path / "top.csv"]
