"""evaluate.stream(): the worker's detector, fed reading by reading, aligned back to each reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.lab.evaluate import stream, training_warnings
from stream_app.models.store import ModelBundle, ModelCard, Scaler, Thresholds, TrainingSummary, ValidationMetrics
from stream_app.pipeline.scorer import Scores
from stream_app.lab.skab import LabelledSeries


class MaxScorer:
    """A stand-in model: a window's score is its largest value."""

    max_batch = 8

    def score(self, windows: np.ndarray) -> Scores:
        score = windows.max(axis=(1, 2)).astype(np.float32)
        return Scores(feature_errors=score[:, None], score=score)


def _detector(window: int = 3) -> Detector:
    card = ModelCard(
        features=["x"], window=window, units=0,
        training=TrainingSummary(source="t", series=1, readings=1, train_windows=1, validation_windows=1,
                                 feature_mean={}, feature_std={}, epochs=0),
        validation=ValidationMetrics(train_loss=0, validation_loss=0, validation_score_p50=0, validation_score_p99=0,
                                     validation_score_max=0, validation_windows_over_threshold=0),
    )  # fmt: skip
    thresholds = Thresholds(quantile=0.99, multiplier=1.0, threshold=1.0, feature_reference=[1.0], stuck_features=[])
    bundle = ModelBundle(path=Path("."), card=card, scaler=Scaler(mean=[0.0], scale=[1.0]), thresholds=thresholds)
    rule = EpisodeRule(open_after=3, close_after=10, close_ratio=0.8)
    return Detector(bundle, MaxScorer(), DetectorConfig(rule=rule, lines=LineConfig(enabled=False), min_check_windows=0))  # type: ignore[arg-type]


def _series(device: str, n: int = 60, train_rows: int = 0) -> LabelledSeries:
    values = np.zeros((n, 1), np.float32)
    values[10:20] = 5.0
    labels = np.zeros(n, bool)
    labels[10:20] = True
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    return LabelledSeries(device_id=device, features=["x"], ts=ts, values=values, labels=labels, train_rows=train_rows)


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_episode_opens_and_closes_at_the_right_readings(batch_size: int) -> None:
    (trace,) = stream(_detector(), [_series("d")], batch_size=batch_size)
    # Windows of 3: the window ending at reading 10 is the first over the line; the episode opens
    # at the third such window (reading 12). The last window holding reading 19 ends at 21; the
    # tenth quiet window after it ends at reading 31, which closes the episode.
    assert np.flatnonzero(trace.is_open).tolist() == list(range(12, 31))
    assert np.flatnonzero(trace.over_line).tolist() == list(range(10, 22))
    assert np.isnan(trace.ratio[:2]).all() and trace.ratio[2] == 0.0


def test_devices_interleave_without_mixing_and_training_rows_are_left_out() -> None:
    traces = stream(_detector(), [_series("a", train_rows=5), _series("b")], batch_size=4)
    assert [t.device_id for t in traces] == ["a", "b"]
    assert len(traces[0].ts) == 55 and len(traces[1].ts) == 60
    assert np.flatnonzero(traces[0].is_open).tolist() == [i - 5 for i in range(12, 31)]
    assert np.flatnonzero(traces[1].is_open).tolist() == list(range(12, 31))


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
