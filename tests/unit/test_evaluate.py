"""evaluate.stream(): the worker's detector, fed reading by reading, aligned back to each reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_app.lab.evaluate import EvaluateOptions, Model, evaluate_shared, stream, training_warnings
from stream_app.lab.skab import LabelledSeries
from tests.support.builders import episode_detector, labelled_series


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_episode_opens_and_closes_at_the_right_readings(batch_size: int) -> None:
    (trace,) = stream(episode_detector(), [labelled_series("d")], batch_size=batch_size)
    # Windows of 3: the window ending at reading 10 is the first over the line; the episode opens
    # at the third such window (reading 12). The last window holding reading 19 ends at 21; the
    # tenth quiet window after it ends at reading 31, which closes the episode.
    assert np.flatnonzero(trace.is_open).tolist() == list(range(12, 31))
    assert np.flatnonzero(trace.over_line).tolist() == list(range(10, 22))
    assert np.isnan(trace.ratio[:2]).all() and trace.ratio[2] == 0.0


def test_devices_interleave_without_mixing_and_training_rows_are_left_out() -> None:
    traces = stream(episode_detector(), [labelled_series("a", train_rows=5), labelled_series("b")], batch_size=4)
    assert [t.device_id for t in traces] == ["a", "b"]
    assert len(traces[0].ts) == 55 and len(traces[1].ts) == 60
    assert np.flatnonzero(traces[0].is_open).tolist() == [i - 5 for i in range(12, 31)]
    assert np.flatnonzero(traces[1].is_open).tolist() == list(range(12, 31))


def test_progress_follows_each_micro_batch_up_to_every_reading_fed() -> None:
    seen: list[tuple[int, int]] = []
    series = [labelled_series("a", train_rows=5), labelled_series("b")]
    stream(episode_detector(), series, batch_size=50, on_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(50, 120), (100, 120), (120, 120)]  # training rows are fed, so they count


def test_an_evaluation_reports_its_stage_and_progress_and_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[int, int]] = []
    stages: list[str] = []
    options = EvaluateOptions(on_progress=lambda d, t: seen.append((d, t)), on_stage=stages.append)
    evaluate_shared(Model(episode_detector()), [labelled_series("d")], options, source="t")
    assert stages == ["scoring 1 device(s)"] and seen[-1] == (60, 60)
    assert capsys.readouterr() == ("", "")


def test_training_warnings_count_labelled_rows_in_training_only() -> None:
    labels = np.zeros(10, bool)
    labels[[1, 2, 7]] = True  # two in the 4 training rows, one after
    ts = np.arange(10, dtype=np.int64)
    clean = LabelledSeries("clean", ["x"], ts, np.zeros((10, 1), np.float32), np.arange(10) >= 4, train_rows=4)
    dirty = LabelledSeries("dirty", ["x"], ts, np.zeros((10, 1), np.float32), labels, train_rows=4)
    assert clean.training_anomalies == 0 and dirty.training_anomalies == 2
    assert training_warnings([clean, dirty]) == [
        "dirty: 2 of its 4 training rows are labelled anomalous; its model learns that behaviour as normal"
    ]


def test_per_series_progress_counts_across_the_whole_run() -> None:
    from stream_app.lab.evaluate import _offset

    seen: list[tuple[int, int]] = []
    second = _offset(lambda d, t: seen.append((d, t)), 100, 250)
    assert second is not None and _offset(None, 0, 1) is None
    second(30, 150)
    assert seen == [(130, 250)]


def test_nabs_wider_windows_credit_an_opening_just_before_a_labelled_run() -> None:
    from stream_app.lab.evaluate import Trace, episode_events_score

    n = 1000
    truth = np.zeros(n, bool)
    truth[500:510] = True
    is_open = np.zeros(n, bool)
    is_open[470:520] = True  # opens 30 points before the labelled run
    nan = np.full(n, np.nan)
    trace = Trace("d", np.arange(n) * 60_000, truth, is_open, is_open, nan)
    assert episode_events_score([trace]).detected == 0  # the run as labelled: a false opening and a miss
    wide = episode_events_score([trace], window_share=0.1)  # a 100-point window around it
    assert wide.detected == 1 and wide.false_detections == 0 and wide.score is not None and wide.score > 50


def test_detections_have_a_row_for_every_input_row_warm_up_first(tmp_path: Path) -> None:
    import csv
    import dataclasses

    from stream_app.lab.evaluate import write_detections

    detector = episode_detector()
    detector.config = dataclasses.replace(detector.config, trace=True)
    traces = stream(detector, [labelled_series("a", train_rows=5)], batch_size=4)
    path = tmp_path / "det.csv"
    assert write_detections(traces, path) == 60
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 60 and list(rows[0])[-2:] == ["label", "scored"]
    assert [r["scored"] for r in rows] == ["0"] * 5 + ["1"] * 55
    assert all(r["score"] == "" and r["opened"] == "0" for r in rows[:5])
    # Every row's anomaly_score is a number (0 without a verdict: warm-up, the window filling): a scorer
    # that sorts the column meets no blank.
    scores = [float(r["anomaly_score"]) for r in rows]
    assert scores[:5] == [0.0] * 5 and all(0.0 <= v < 1.0 for v in scores)
    assert [int(r["epoch_ms"]) for r in rows] == sorted(int(r["epoch_ms"]) for r in rows)
    opened = [i for i, r in enumerate(rows) if r["opened"] == "1"]
    assert opened == [12] and float(rows[12]["anomaly_score"]) > 0.5  # input row 12: the third window over the line
    assert [r["label"] for r in rows[10:20]] == ["1"] * 10


def test_a_series_too_short_for_its_own_model_learns_later_or_gets_no_verdict_and_the_run_goes_on(tmp_path: Path) -> None:
    from stream_app.lab.evaluate import write_detections
    from stream_app.lab.evaluate import evaluate_per_series
    from stream_app.training.fit import TrainingConfig, min_training_rows

    training = TrainingConfig(window=4, units=2, epochs=1, batch_size=32)
    need = min_training_rows(training)
    rng = np.random.default_rng(0)

    def series(name: str, n: int, train_rows: int) -> LabelledSeries:
        ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
        return LabelledSeries(name, ["x"], ts, rng.normal(0, 1, (n, 1)).astype(np.float32), np.zeros(n, bool), train_rows=train_rows)

    whole, late, tiny = series("whole", 3 * need, need), series("late", 3 * need, 5), series("tiny", need - 1, 5)
    report, traces = evaluate_per_series([whole, late, tiny], EvaluateOptions(training=training), source="t")
    assert [len(t.ts) for t in traces] == [2 * need, 3 * need - 5, need - 6]  # every scored row of every series
    late_trace, tiny_trace = traces[1], traces[2]
    # 'late' learnt on its first `need` rows: those get no verdict (the model saw them), the rest do.
    assert np.isnan(late_trace.ratio[: need - 5]).all() and not late_trace.is_open[: need - 5].any()
    assert np.isfinite(late_trace.ratio[need - 5 + training.window :]).all()
    assert np.isnan(tiny_trace.ratio).all() and not tiny_trace.is_open.any()
    assert any(w.startswith(f"late: 5 training rows are too few for a model; it learnt on its first {need} rows") for w in report.warnings)
    assert any(w.startswith(f"tiny: {need - 1} rows, too few to learn a model on") for w in report.warnings)
    assert write_detections(traces, tmp_path / "det.csv") == 3 * need + 3 * need + need - 1
