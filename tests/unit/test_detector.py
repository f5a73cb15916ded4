"""The detector's adaptation: device lines that learn each device's normal, and what refits may learn from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream_app.contracts import Reading
from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.models.store import ModelBundle, ModelCard, Scaler, Thresholds, TrainingSummary, ValidationMetrics
from stream_app.pipeline.reservoir import RefitConfig
from stream_app.pipeline.scorer import Scores

T0 = 1_795_000_000_000


class MaxScorer:
    """A stand-in model: a feature's error is its largest value in the window."""

    max_batch = 16

    def score(self, windows: np.ndarray) -> Scores:
        errors = windows.max(axis=1).astype(np.float32)
        return Scores(feature_errors=errors, score=errors.max(axis=1))


def detector(*, warmup: int = 20, on_refit=None, refit: RefitConfig = RefitConfig()) -> Detector:  # type: ignore[no-untyped-def]
    card = ModelCard(
        features=["x"], window=2, units=0,
        training=TrainingSummary(source="t", series=1, readings=1, train_windows=1, validation_windows=1,
                                 feature_mean={}, feature_std={}, epochs=0),
        validation=ValidationMetrics(train_loss=0, validation_loss=0, validation_score_p50=0, validation_score_p99=0,
                                     validation_score_max=0, validation_windows_over_threshold=0),
    )  # fmt: skip
    thresholds = Thresholds(quantile=0.99, multiplier=1.0, threshold=1.0, feature_reference=[1.0], stuck_features=[])
    bundle = ModelBundle(path=Path("."), card=card, scaler=Scaler(mean=[0.0], scale=[1.0]), thresholds=thresholds)
    config = DetectorConfig(
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8),
        lines=LineConfig(history=32, block=2, warmup=warmup, max_step=0.05),
        refit=refit,
    )
    return Detector(bundle, MaxScorer(), config, on_refit=on_refit)  # type: ignore[arg-type]


def run(d: Detector, xs: list[float], *, device: str = "d", start: int = 0) -> list[tuple[int, str]]:
    """Feed one reading a second; return (reading index, alert state) of every alert."""
    readings = [Reading(device_id=device, ts=T0 + (start + i) * 1000, values={"x": float(x)}) for i, x in enumerate(xs)]
    out = []
    for k in range(0, len(readings), 16):
        for alert in d.process(readings[k : k + 16], now_ms=T0 + 10**9).alerts:
            index = (int(np.datetime64(alert.window_end[:-1], "ms").astype(np.int64)) - T0) // 1000
            out.append((int(index), alert.episode.state))
    return out


def test_a_normal_the_model_never_saw_is_learnt_in_warmup_and_a_fault_still_found() -> None:
    rng = np.random.default_rng(1)
    d = detector(warmup=20)
    normal = list(3.0 + 0.2 * rng.random(300))  # always 3x over the model's own line
    assert run(d, normal) == []  # no episode: not during warm-up, not after
    alerts = run(d, [30.0] * 5 + list(3.0 + 0.2 * rng.random(40)), start=300)
    assert alerts[0] == (302, "open")  # the third window over the device's own line


def test_windows_of_an_episode_never_reach_the_refit_reservoir() -> None:
    d = detector(warmup=4, on_refit=lambda *_: None, refit=RefitConfig(capacity=512, min_windows=10**6))
    assert d.reservoir is not None
    rng = np.random.default_rng(2)
    # A device that floods anomalies: mostly at 50, with short normal breaks.
    xs = [0.5 + 0.1 * rng.random() for _ in range(40)]
    for _ in range(10):
        xs += [50.0] * 30 + [0.5] * 2
    run(d, xs)
    kept = d.reservoir.windows()
    assert len(kept) > 0
    assert kept.max() < 1.0  # only plainly normal windows: nothing of the fault


def test_a_refit_hook_sees_only_windows_before_it_is_called() -> None:
    calls: list[tuple[int, int]] = []

    def hook(det: Detector, windows: np.ndarray, now_ms: int) -> None:
        calls.append((len(windows), now_ms))

    d = detector(warmup=4, on_refit=hook, refit=RefitConfig(capacity=64, min_windows=32, every_windows=32, min_interval_s=10))
    run(d, [0.5] * 200)
    assert len(calls) >= 2
    assert all(n <= 64 for n, _ in calls)
    assert all(b - a >= 10_000 for (_, a), (_, b) in zip(calls, calls[1:]))
