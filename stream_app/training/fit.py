"""Training: normal series in, a scored and calibrated model version out.

Each series (one device or one recording, in time order) is split in time: the first part
trains, the last ``validation_share`` is held out. The scaler is fitted on training readings
only, and the threshold is calibrated on the held-out windows with the same compiled scorer the
worker uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stream_app.training.autoencoder import build_autoencoder, training_jit
from stream_app.training.reference import reference_from
from stream_app.training.wander import centred_features
from stream_app.models.store import DriftReference, ModelBundle, ModelCard, ModelStore, Scaler, Thresholds, TrainingSummary, ValidationMetrics
from stream_app.pipeline.scorer import Scorer
from stream_app.pipeline.line_methods import DEFAULT_EWMA_ALPHA, line_method
from stream_app.pipeline.thresholds import DEFAULT_MULTIPLIER, DEFAULT_QUANTILE, calibrate


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    window: int = 16
    units: int = 16
    epochs: int = 15
    batch_size: int = 256
    train_stride: int = 2
    validation_share: float = 0.2
    quantile: float = DEFAULT_QUANTILE
    multiplier: float = DEFAULT_MULTIPLIER
    # Calibration: a name in line_methods.METHODS ("quantile", "per-feature" or "dynamic").
    threshold_method: str = "quantile"
    ewma_alpha: float = DEFAULT_EWMA_ALPHA
    seed: int = 0
    # XLA pays off on big training sets; for tiny ones (SKAB's 400 rows) compiling costs more than it saves.
    jit_compile: bool = True

    @property
    def stuck_run(self) -> int:
        """Readings a sensor must repeat to fail the stuck check: half a window, so a stuck sensor is
        caught that many readings after it stops, not a whole window later."""
        return max(2, self.window // 2)

    def __post_init__(self) -> None:
        # Refuse a bad calibration choice before minutes of training, not after.
        line_method(self.threshold_method)


def run_ranges(windows: np.ndarray, run: int) -> np.ndarray:
    """(n, T, F) windows -> (n, F): each window's smallest max - min over any ``run`` consecutive readings."""
    runs = sliding_window_view(windows, min(run, windows.shape[1]), axis=1)  # (n, T-run+1, F, run)
    return np.ptp(runs, axis=-1).min(axis=1)


def repeats(values: np.ndarray) -> tuple[np.ndarray, int]:
    """(per-feature count of readings equal to the one before, number of consecutive pairs) of (n, F) readings."""
    return (values[1:] == values[:-1]).sum(axis=0), max(0, len(values) - 1)


def windows_of(series: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """All windows (n, T, F) of a (time, F) series, every ``stride`` steps; a copy."""
    if len(series) < window:
        return np.empty((0, window, series.shape[1]), np.float32)
    view = sliding_window_view(series, window, axis=0)  # (n, F, T)
    return np.ascontiguousarray(view[::stride].transpose(0, 2, 1), dtype=np.float32)


def min_training_rows(config: TrainingConfig) -> int:
    """The fewest rows of one series ``TrainingData.prepare`` takes: 10 training and 10 validation windows."""
    rows = config.window
    while True:
        cut = int(rows * (1 - config.validation_share))
        train = (cut - config.window) // config.train_stride + 1 if cut >= config.window else 0
        held = rows - cut - config.window + 1 if rows - cut >= config.window else 0
        if train >= 10 and held >= 10:
            return rows
        rows += 1


@dataclass(frozen=True, slots=True)
class TrainingData:
    """Normal series split in time into training and validation windows, with the scaler fitted on training only."""

    series: int
    readings: int
    train_values: np.ndarray  # (n, F) training readings
    scaler: Scaler
    x_train: np.ndarray  # (m, T, F)
    x_val: np.ndarray  # (k, T, F)

    @classmethod
    def prepare(cls, series: list[np.ndarray], config: TrainingConfig) -> TrainingData:
        train_parts, val_parts = _split(series, config)
        train_values = np.concatenate(train_parts)
        x_train = np.concatenate([windows_of(s, config.window, config.train_stride) for s in train_parts])
        x_val = np.concatenate([windows_of(s, config.window, 1) for s in val_parts])
        if len(x_train) < 10 or len(x_val) < 10:
            raise ValueError(f"not enough data: {len(x_train)} training and {len(x_val)} validation windows")
        scaler = Scaler.fit(train_values, centred=centred_features(train_parts))
        return cls(len(series), int(sum(len(s) for s in series)), train_values, scaler, x_train, x_val)

    def calibrate(
        self, val_errors: np.ndarray, features: list[str], config: TrainingConfig, val_peaks: np.ndarray | None = None
    ) -> Thresholds:
        """Thresholds from the validation windows' per-feature errors (n, F) (and largest errors), by the configured method."""
        return calibrate(
            val_errors,
            features,
            peak_errors=val_peaks,
            window_means=self.x_val.mean(axis=1),
            window_ranges=np.concatenate([run_ranges(self.x_train, config.stuck_run), run_ranges(self.x_val, config.stuck_run)]),
            stuck_run=config.stuck_run,
            repeats=repeats(self.train_values),
            readings=self.train_values,
            held_out=self.x_val,
            quantile=config.quantile,
            multiplier=config.multiplier,
            method=config.threshold_method,
            ewma_alpha=config.ewma_alpha,
        )

    def summary(self, features: list[str], *, source: str, epochs: int) -> TrainingSummary:
        return TrainingSummary(
            source=source,
            series=self.series,
            readings=self.readings,
            train_windows=len(self.x_train),
            validation_windows=len(self.x_val),
            feature_mean=dict(zip(features, self.train_values.mean(axis=0).astype(float).tolist())),
            feature_std=dict(zip(features, self.train_values.std(axis=0).astype(float).tolist())),
            epochs=epochs,
        )


def validation_metrics(
    val_scores: np.ndarray, thresholds: Thresholds, *, train_loss: float = 0.0, validation_loss: float = 0.0
) -> ValidationMetrics:
    return ValidationMetrics(
        train_loss=train_loss,
        validation_loss=validation_loss,
        validation_score_p50=float(np.median(val_scores)),
        validation_score_p99=float(np.quantile(val_scores, 0.99)),
        validation_score_max=float(val_scores.max()),
        validation_windows_over_threshold=float((val_scores > thresholds.threshold).mean()),
    )


def calibration_record(thresholds: Thresholds) -> dict[str, object]:
    """What the model card records of the calibration (the full lines are in thresholds.json)."""
    return thresholds.model_dump(include={"method", "quantile", "multiplier", "ewma_alpha", "z", "threshold", "feature_thresholds", "stuck_features", "stuck_run", "stuck_runs", "jump_lines", "peak_threshold"})


def drift_reference(train_values: np.ndarray, features: list[str], val_relative: np.ndarray, thresholds: Thresholds) -> DriftReference:
    """What the drift watch compares live traffic with: training readings, and validation windows'
    distance to the line as the detector measures it (per-feature lines, or the one line; the
    dynamic method's smoothing is left out)."""
    line = line_method(thresholds.method)(thresholds, features)
    ratios = line.window_ratio(val_relative.max(axis=1), val_relative)
    return reference_from(train_values, features, ratios, float((ratios > 1.0).mean()))


def train(
    series: list[np.ndarray],
    features: list[str],
    store: ModelStore,
    config: TrainingConfig = TrainingConfig(),
    *,
    source: str,
    promote: bool = True,
    verbose: int = 0,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> ModelBundle:
    """Train, calibrate and save a model version; ``on_epoch(epoch, logs)`` after each epoch (progress)."""
    import keras

    data = TrainingData.prepare(series, config)
    scaler, x_train, x_val = data.scaler, data.x_train, data.x_val

    model = build_autoencoder(config.window, len(features), config.units, seed=config.seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=training_jit(config.jit_compile))
    xs_train, xs_val = scaler.transform(x_train), scaler.transform(x_val)
    history = model.fit(
        xs_train,
        xs_train,
        validation_data=(xs_val, xs_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=verbose,
        callbacks=[
            keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.3),
            keras.callbacks.EarlyStopping(patience=4, restore_best_weights=True),
            *([keras.callbacks.LambdaCallback(on_epoch_end=on_epoch)] if on_epoch is not None else []),
        ],
    )

    val_errors, val_peaks = Scorer(model, scaler).raw_errors_and_peaks(x_val)
    thresholds = data.calibrate(val_errors, features, config, val_peaks)
    val_relative = val_errors / np.asarray(thresholds.feature_reference)
    val_scores = val_relative.max(axis=1)
    card = ModelCard(
        features=features,
        window=config.window,
        units=config.units,
        training=data.summary(features, source=source, epochs=len(history.history["loss"])),
        validation=validation_metrics(
            val_scores,
            thresholds,
            train_loss=float(min(history.history["loss"])),
            validation_loss=float(min(history.history["val_loss"])),
        ),
        notes={"train_stride": config.train_stride, "validation_share": config.validation_share},
        calibration=calibration_record(thresholds),
        drift_reference=drift_reference(data.train_values, features, val_relative, thresholds),
    )
    return store.save(model, card, scaler, thresholds, promote=promote)


def _split(series: list[np.ndarray], config: TrainingConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    train_parts, val_parts = [], []
    for s in series:
        s = np.asarray(s, np.float32)
        cut = int(len(s) * (1 - config.validation_share))
        if cut >= config.window:
            train_parts.append(s[:cut])
        if len(s) - cut >= config.window:
            val_parts.append(s[cut:])
    if not train_parts or not val_parts:
        raise ValueError(f"series are too short for windows of {config.window}")
    return train_parts, val_parts
