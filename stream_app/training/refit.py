"""Continual learning: refit a group's model on recent normal windows of its own stream.

The detector hands every window that is plainly normal (outside any episode, under its line, not
in a device's warm-up) to a ``NormalReservoir``: a ring of the most recent such windows of the
group. When enough new ones have arrived and enough stream time has passed, ``refit`` trains a
candidate on the older part of the reservoir and compares it with the serving model on the newest
part, which neither has trained on:

- fine-tune from the serving weights when the data still looks like the scaler's (same scale),
  or train afresh with a new scaler when the readings moved far from it (a model of other
  machines, a sensor replaced);
- the candidate is kept only if its typical score on the held-out recent windows is not worse than
  the serving model's, and its lines are recalibrated on those windows; otherwise it is discarded
  and logged, and scoring goes on with the serving model.

Guardrails against learning a fault as normal: windows of open episodes, windows over the line,
and a device's warm-up or relearning windows never enter the reservoir (detector.py), and a refit
needs ``min_windows`` of them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stream_app.models.store import ModelBundle, ModelStore, Scaler
from stream_app.pipeline.detector import record_refit
from stream_app.pipeline.reservoir import NormalReservoir, RefitConfig, RefitResult
from stream_app.pipeline.scorer import Scorer
from stream_app.training.fit import TrainingConfig, calibration_record, run_ranges, validation_metrics

if TYPE_CHECKING:
    from stream_app.pipeline.detector import Detector

log = logging.getLogger(__name__)


def refit(
    bundle: ModelBundle,
    windows: np.ndarray,
    store: ModelStore,
    training: TrainingConfig,
    config: RefitConfig,
    *,
    max_batch: int,
    serving: Scorer,
) -> RefitResult:
    """Train a candidate on ``windows`` (oldest first), keep it if it is no worse on the newest ones."""
    import keras

    started = time.perf_counter()
    cut = int(len(windows) * (1 - config.holdout))
    x_train, x_val = windows[:cut], windows[cut:]
    reference = np.asarray(bundle.thresholds.feature_reference, np.float32)
    serving_median = float(np.median((serving.raw_errors(x_val) / reference).max(axis=1)))

    readings = x_train.reshape(-1, x_train.shape[-1])
    fresh = _moved(bundle.scaler, readings)
    model = bundle.load_keras()
    scaler = Scaler.fit(readings) if fresh else bundle.scaler
    if fresh:  # far from what the model knew: start afresh
        from stream_app.training.autoencoder import build_autoencoder

        model = build_autoencoder(bundle.card.window, len(bundle.card.features), bundle.card.units, seed=training.seed)
    model.compile(optimizer=keras.optimizers.Adam(3e-3 if not fresh else 1e-2), loss="mse", jit_compile=False)
    xs_train, xs_val = scaler.transform(x_train), scaler.transform(x_val)
    history = model.fit(
        xs_train, xs_train, validation_data=(xs_val, xs_val), epochs=config.epochs if not fresh else max(config.epochs, training.epochs),
        batch_size=training.batch_size, shuffle=True, verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)],
    )  # fmt: skip
    candidate = Scorer(model, scaler, max_batch=max_batch)
    val_errors, val_peaks = candidate.raw_errors_and_peaks(x_val)
    candidate_median = float(np.median((val_errors / reference).max(axis=1)))
    # Compared in the serving model's units: the candidate must reconstruct recent normal at least as well.
    if candidate_median > serving_median * config.tolerance:
        return RefitResult(None, None, serving_median, candidate_median, fresh, time.perf_counter() - started)

    from stream_app.pipeline.thresholds import calibrate

    t = bundle.thresholds
    stuck_run = t.stuck_run or bundle.card.window
    thresholds = calibrate(
        val_errors, bundle.card.features, window_means=x_val.mean(axis=1),
        window_ranges=run_ranges(windows, stuck_run), stuck_run=t.stuck_run, quantile=t.quantile,
        peak_errors=val_peaks if t.peak_threshold is not None else None,
        multiplier=t.multiplier, method=t.method, ewma_alpha=t.ewma_alpha or training.ewma_alpha,
    )  # fmt: skip
    # A refit may widen the lines, never tighten them: it calibrates on an hour or so of one regime,
    # far fewer windows than the model's first calibration saw (in score units, 1.0 = typical error
    # for either model, so the two lines compare).
    thresholds = thresholds.model_copy(
        update={
            "threshold": max(thresholds.threshold, t.threshold),
            "feature_thresholds": {
                f: max(v, t.feature_thresholds.get(f, v)) for f, v in thresholds.feature_thresholds.items()
            },
            "feature_envelope": _union(thresholds.feature_envelope, t.feature_envelope),
            "stuck_runs": t.stuck_runs,  # learnt from the model's full training data, not an hour of it
            "resting_values": t.resting_values,
            "peak_threshold": max(thresholds.peak_threshold, t.peak_threshold)
            if thresholds.peak_threshold is not None and t.peak_threshold is not None
            else None,
        }
    )
    if bundle.thresholds.stuck_features is not None and thresholds.stuck_features is not None:
        # A sensor once seen sitting still stays exempt: recent data alone may not show it.
        thresholds = thresholds.model_copy(
            update={"stuck_features": [f for f in thresholds.stuck_features if f in bundle.thresholds.stuck_features]}
        )
    val_scores = (val_errors / np.asarray(thresholds.feature_reference)).max(axis=1)
    card = bundle.card.model_copy(
        update={
            # The audit log's "train" entry for this version says where it came from.
            "training": bundle.card.training.model_copy(
                update={"source": f"refit of {bundle.version} on {len(windows)} recent normal windows of the stream"}
            ),
            "validation": validation_metrics(
                val_scores, thresholds, train_loss=float(min(history.history["loss"])),
                validation_loss=float(min(history.history["val_loss"])),
            ),  # fmt: skip
            "calibration": calibration_record(thresholds),
            "notes": {
                **bundle.card.notes,
                "refit_of": bundle.version,
                "refit_windows": int(len(windows)),
                "refit_fresh_scaler": fresh,
                "refit_median_score": {"serving": round(serving_median, 4), "candidate": round(candidate_median, 4)},
            },
        }
    )
    saved = store.save(model, card, scaler, thresholds, promote=False)
    scorer = Scorer(
        model, scaler, reference=thresholds.feature_reference, peak_reference=thresholds.peak_reference, max_batch=max_batch
    )
    return RefitResult(saved, scorer, serving_median, candidate_median, fresh, time.perf_counter() - started)


def _union(
    new: dict[str, tuple[float, float]], old: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """Each feature's envelope covering both the old and the recent normal."""
    if not old:
        return {}  # the model had no envelope (off, or too little data): a refit does not add one
    return {f: (min(lo, old[f][0]), max(hi, old[f][1])) if f in old else (lo, hi) for f, (lo, hi) in new.items()}


def _moved(scaler: Scaler, readings: np.ndarray) -> bool:
    """Whether recent readings sit far outside what the scaler was fitted on (in its own units)."""
    mean = np.asarray(scaler.mean, np.float64)
    scale = np.asarray(scaler.scale, np.float64)
    z_mean = np.abs(readings.mean(axis=0) - mean) / scale
    spread = readings.std(axis=0) / scale
    return bool(np.any(z_mean > 3.0) or np.any(spread > 3.0) or np.any((spread < 1 / 3) & (spread > 0)))


class SyncRefitter:
    """The refit hook of ``floorwatch evaluate``: refits inline, so a refit at stream time t saw only
    windows before t, and the next batch is scored by the kept candidate (causal replay)."""

    def __init__(self, store: ModelStore, training: TrainingConfig, config: RefitConfig, *, max_batch: int) -> None:
        self.store = store
        self.training = training
        self.config = config
        self.max_batch = max_batch

    def __call__(self, detector: Detector, windows: np.ndarray, now_ms: int) -> None:
        serving = detector.scorer
        assert isinstance(serving, Scorer), "refits are for autoencoder models"
        try:
            result = refit(
                detector.bundle, windows, self.store, self.training, self.config, max_batch=self.max_batch,
                serving=serving,
            )  # fmt: skip
        except Exception as exc:  # a failed refit must never stop scoring
            detector.refits["discarded"] += 1
            log.warning("refit of %s failed (%s: %s): scoring goes on with it", detector.model_version, type(exc).__name__, exc)
            return
        record_refit(detector, result)


class BackgroundRefitter:
    """The worker's refit hook: trains in a background thread, so scoring never waits for it.

    One refit at a time per worker. The result is handed to the detector, which installs it at the
    start of its next batch (``Detector.process``), on the scoring thread: a swap never happens
    mid-batch. While a refit trains, scoring shares the CPU (and the GIL) with it; at the default
    pace (at most one an hour per group) that is a few seconds an hour. Kept candidates are saved in
    the group's store as new versions, not promoted: promotion stays an operator's decision.
    """

    def __init__(self, store: ModelStore, training: TrainingConfig, config: RefitConfig, *, max_batch: int) -> None:
        from stream_app.background import background_executor

        self.store = store
        self.training = training
        self.config = config
        self.max_batch = max_batch
        self._pool = background_executor("floorwatch-refit")  # trains beside scoring, at lower priority
        self._busy = False

    def __call__(self, detector: Detector, windows: np.ndarray, now_ms: int) -> None:
        if self._busy:
            return
        self._busy = True
        bundle, serving = detector.bundle, detector.scorer
        assert isinstance(serving, Scorer), "refits are for autoencoder models"

        def work() -> None:
            try:
                detector.pending_refit = refit(
                    bundle, windows, self.store, self.training, self.config, max_batch=self.max_batch, serving=serving
                )
            except Exception as exc:  # a failed refit must never stop scoring
                detector.refits["discarded"] += 1
                log.warning("refit of %s failed (%s: %s): scoring goes on with it", bundle.version, type(exc).__name__, exc)
            finally:
                self._busy = False

        self._pool.submit(work)
