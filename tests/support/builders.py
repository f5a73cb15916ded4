"""Test builders shared by the unit and integration tests: a stand-in scorer, model bundles and detectors
without weights, alerts, failure labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from stream_app.contracts import Alert, Episode, FailureLabel, Reading, iso_ms
from stream_app.models.store import ModelBundle, ModelCard, ModelStore, Scaler, Thresholds, TrainingSummary, ValidationMetrics
from stream_app.lab.skab import LabelledSeries
from stream_app.pipeline.detector import Detector, DetectorConfig, RefitHook
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.routing import DEFAULT_GROUP
from stream_app.pipeline.scorer import Scores

T0 = 1_795_000_000_000  # epoch ms

# Fixed lines and checks from the first window: tests that judge the model's line alone.
FIXED_LINES = DetectorConfig(lines=LineConfig(enabled=False), min_check_windows=0)


class MaxScorer:
    """A stand-in model: a feature's error is its largest value in the window (times ``gain``); the score, the
    largest feature error."""

    def __init__(self, gain: float = 1.0, max_batch: int = 8) -> None:
        self.gain, self.max_batch = gain, max_batch

    def score(self, windows: np.ndarray) -> Scores:
        errors = (windows.max(axis=1) * self.gain).astype(np.float32)
        return Scores(feature_errors=errors, score=errors.max(axis=1))


def card(features: list[str], window: int = 3, **fields: Any) -> ModelCard:
    """A model card with empty training figures (``fields``: version, asset_group, drift_reference...)."""
    return ModelCard(
        features=features, window=window, units=0,
        training=TrainingSummary(source="t", series=1, readings=1, train_windows=1, validation_windows=1,
                                 feature_mean={}, feature_std={}, epochs=0),
        validation=ValidationMetrics(train_loss=0, validation_loss=0, validation_score_p50=0, validation_score_p99=0,
                                     validation_score_max=0, validation_windows_over_threshold=0),
        **fields,
    )  # fmt: skip


def thresholds(n: int, **extra: Any) -> Thresholds:
    """The model's line at 1.0, no envelope, no stuck features."""
    base = dict(quantile=0.99, multiplier=1.0, threshold=1.0, feature_reference=[1.0] * n, stuck_features=[])
    return Thresholds.model_validate(base | extra)


def bundle(features: list[str], window: int = 3, *, group: str = DEFAULT_GROUP, card_fields: dict[str, Any] | None = None,
           **thresholds_extra: Any) -> ModelBundle:  # fmt: skip
    """A bundle without weights (pair it with ``MaxScorer``); identity scaling."""
    n = len(features)
    return ModelBundle(
        path=Path("."), card=card(features, window, **(card_fields or {})), scaler=Scaler(mean=[0.0] * n, scale=[1.0] * n),
        thresholds=thresholds(n, **thresholds_extra), group=group,
    )  # fmt: skip


def detector(
    model: ModelBundle, config: DetectorConfig = FIXED_LINES, *, scorer: MaxScorer | None = None, on_refit: RefitHook | None = None
) -> Detector:
    """The worker's detector on ``model`` with a stand-in scorer."""
    return Detector(model, scorer or MaxScorer(), config, on_refit=on_refit)


def openings(d: Detector, xs: np.ndarray, batch: int = 16, every_s: int = 1) -> list[tuple[int, list[str]]]:
    """Feed device "d" the one-sensor series ``xs`` (readings, 1; feature "x", one every ``every_s`` seconds
    from ``T0``) ``batch`` readings at a time: (reading index, check failures) of each alert that opened an episode."""
    readings = [Reading(device_id="d", ts=T0 + i * every_s * 1000, values={"x": float(x)}) for i, x in enumerate(xs[:, 0])]
    out = []
    now_ms = T0 + max(10**9, len(readings) * every_s * 1000)  # (no reading is in the future)
    for k in range(0, len(readings), batch):
        for alert in d.process(readings[k : k + batch], now_ms=now_ms).alerts:
            if alert.episode.state == "open":
                at = (int(np.datetime64(alert.window_end[:-1], "ms").astype(np.int64)) - T0) // (every_s * 1000)
                out.append((at, alert.check_failures))
    return out


def write_version(store: ModelStore, features: list[str], window: int = 3, *, promote: bool = True) -> str:
    """A version folder written by hand (JSON only: ``MaxScorer`` needs no weights)."""
    version = f"v{len(store.versions()) + 1:04d}"
    folder = store.root / version
    folder.mkdir(parents=True)
    n = len(features)
    (folder / "card.json").write_text(card(features, window, version=version).model_dump_json())
    (folder / "scaler.json").write_text(Scaler(mean=[0.0] * n, scale=[1.0] * n).model_dump_json())
    (folder / "thresholds.json").write_text(thresholds(n).model_dump_json())
    (folder / "model.keras").write_bytes(b"not used by these tests")
    if promote:
        store.promote(version)
    return version


def label(device: str = "press-01", start: int = T0, end: int = T0 + 60_000) -> FailureLabel:
    return FailureLabel(device_id=device, kind="bearing-wear", start=start, end=end, sensor="vib", magnitude=3.0)


def alert(
    device: str,
    window_end_ms: int,
    *,
    state: Literal["open", "closed"] = "open",
    episode_id: str | None = None,
) -> Alert:
    """An alert of one episode, its window ending at ``window_end_ms``."""
    episode_id = episode_id or f"{device}@{window_end_ms}"
    return Alert(
        alert_id=Alert.make_id(episode_id, state, "v0001"),
        device_id=device,
        window_start=iso_ms(window_end_ms - 15_000),
        window_end=iso_ms(window_end_ms),
        score=4.2,
        threshold=2.0,
        severity="major",
        feature_errors={"vib": 4.2, "temp": 1.1},
        top_feature="vib",
        model_version="v0001",
        detected_at=iso_ms(window_end_ms + 5),
        episode=Episode(
            episode_id=episode_id,
            state=state,
            started_at=iso_ms(window_end_ms),
            ended_at=iso_ms(window_end_ms + 1000) if state == "closed" else None,
            peak_ratio=2.1,
            windows=3,
        ),
    )


def episode_detector(window: int = 3) -> Detector:
    """One feature ``x``, fixed line at 1.0; an episode opens after 3 windows over it and closes after 10 under."""
    rule = EpisodeRule(open_after=3, close_after=10, close_ratio=0.8)
    return detector(bundle(["x"], window), DetectorConfig(rule=rule, lines=LineConfig(enabled=False), min_check_windows=0))


def labelled_series(device: str, n: int = 60, train_rows: int = 0) -> LabelledSeries:
    """One feature ``x`` a second: 0.0, except 5.0 (labelled anomalous) on readings 10 to 19."""
    values = np.zeros((n, 1), np.float32)
    values[10:20] = 5.0
    labels = np.zeros(n, bool)
    labels[10:20] = True
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    return LabelledSeries(device_id=device, features=["x"], ts=ts, values=values, labels=labels, train_rows=train_rows)


def train_tiny_model(root: Path) -> Path:
    """A small model trained on simulated normal data (seconds, not minutes), stored under ``root``."""
    from producers.scenarios import FEATURES
    from producers.simulator import normal_training_series
    from stream_app.training.fit import TrainingConfig, train

    series = normal_training_series(30, 1200, seed=1)
    train(series, FEATURES, ModelStore(root), TrainingConfig(window=8, units=8, epochs=4), source="tests")
    return root
