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
  the serving model's, and its lines are recalibrated on those windows (never tighter than the first
  calibration's, and an earlier refit's widening fades: ``bounded_lines``); otherwise it is discarded
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
from pydantic import BaseModel, Field

from stream_app.models.store import ModelBundle, ModelStore, Scaler, Thresholds
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
    now_ms: int,
) -> RefitResult:
    """Train a candidate on ``windows`` (oldest first), keep it if it is no worse on the newest ones.

    ``now_ms`` is the stream time of the refit (the newest window's end): how long ago the serving
    version's lines were set, for ``bounded_lines``.
    """
    import keras

    from stream_app.training.autoencoder import training_jit

    started = time.perf_counter()
    cut = int(len(windows) * (1 - config.holdout))
    x_train, x_val = windows[:cut], windows[cut:]
    reference = np.asarray(bundle.thresholds.feature_reference, np.float32)
    serving_median = float(np.median((serving.raw_errors(x_val) / reference).max(axis=1)))

    scaler, fresh = refit_scaler(bundle.scaler, x_train)
    model = bundle.load_keras()
    if fresh:  # far from what the model knew: start afresh
        from stream_app.training.autoencoder import build_autoencoder

        model = build_autoencoder(bundle.card.window, len(bundle.card.features), bundle.card.units, seed=training.seed)
    model.compile(optimizer=keras.optimizers.Adam(3e-3 if not fresh else 1e-2), loss="mse", jit_compile=training_jit(False))
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
    first = first_lines(bundle)
    keep = remembered(bundle, now_ms, config.memory_half_life_s)
    thresholds = thresholds.model_copy(
        update={
            **bounded_lines(thresholds, t, first, keep),
            "stuck_runs": t.stuck_runs,  # learnt from the model's full training data, not an hour of it
            "resting_values": t.resting_values,
            "jump_lines": t.jump_lines,
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
                "refit_at_ms": int(now_ms),
                "first_lines": first.model_dump(),
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


class FirstLines(BaseModel):
    """The lines of the first calibration of a chain of refits (the trained model's, on its full validation set)."""

    threshold: float
    feature_thresholds: dict[str, float] = Field(default_factory=dict)
    feature_envelope: dict[str, tuple[float, float]] = Field(default_factory=dict)
    peak_threshold: float | None = None


def first_lines(bundle: ModelBundle) -> FirstLines:
    """The first calibration's lines of ``bundle``'s chain of refits (its own when it is not a refit)."""
    noted = bundle.card.notes.get("first_lines")
    if isinstance(noted, dict):
        return FirstLines.model_validate(noted)
    t = bundle.thresholds
    return FirstLines(
        threshold=t.threshold, feature_thresholds=t.feature_thresholds, feature_envelope=t.feature_envelope,
        peak_threshold=t.peak_threshold,
    )  # fmt: skip


def remembered(bundle: ModelBundle, now_ms: int, half_life_s: float) -> float:
    """The share of the serving version's widening (over the first lines) still remembered at ``now_ms``."""
    if half_life_s <= 0:
        return 0.0
    since = bundle.card.notes.get("refit_at_ms")
    return 1.0 if not isinstance(since, int) else float(0.5 ** (max(0, now_ms - since) / 1000 / half_life_s))


def bounded_lines(candidate: Thresholds, serving: Thresholds, first: FirstLines, keep: float) -> dict[str, object]:
    """A kept refit's lines: its own, never tighter than the first calibration's, and covering what earlier
    refits widened them to, a share ``keep`` of it.

    A refit calibrates on an hour or so of one regime, far fewer windows than the first calibration saw,
    so it may not tighten below it. Without ``keep`` < 1 every refit could only widen (each one the union of
    the last and its own), and after weeks of benign regimes the lines would have taken in all of them and
    leave no room for a slow fault; with it, a widening that the stream no longer shows fades (half of it
    after ``RefitConfig.memory_half_life_s`` of stream time), while what recurs weekly is remembered by the
    devices' seasonal lines (pipeline/seasonal.py). All in score units (1.0 = typical error of either model,
    so lines of different versions compare), the envelope in sensor units.
    """

    def line(new: float, old: float | None, base: float | None) -> float:
        base = new if base is None else base
        held = base if old is None else base + keep * max(0.0, old - base)  # never below base
        return max(new, held)

    peak = (
        line(candidate.peak_threshold, serving.peak_threshold, first.peak_threshold)
        if candidate.peak_threshold is not None and serving.peak_threshold is not None
        else None
    )
    return {
        "threshold": line(candidate.threshold, serving.threshold, first.threshold),
        "feature_thresholds": {
            f: line(v, serving.feature_thresholds.get(f), first.feature_thresholds.get(f))
            for f, v in candidate.feature_thresholds.items()
        },
        "feature_envelope": _envelope(candidate.feature_envelope, serving.feature_envelope, first.feature_envelope, keep),
        "peak_threshold": peak,
    }


def _envelope(
    new: dict[str, tuple[float, float]],
    old: dict[str, tuple[float, float]],
    first: dict[str, tuple[float, float]],
    keep: float,
) -> dict[str, tuple[float, float]]:
    """Each feature's envelope covering the recent normal, the first calibration's, and ``keep`` of how far
    the serving version's reached past the first."""
    if not first:
        return {}  # the model had no envelope (off, or too little data): a refit does not add one
    out: dict[str, tuple[float, float]] = {}
    for f, (lo, hi) in new.items():
        if f not in first:
            out[f] = (lo, hi)
            continue
        base_lo, base_hi = first[f]
        old_lo, old_hi = old.get(f, (base_lo, base_hi))
        out[f] = (
            min(lo, base_lo, base_lo - keep * max(0.0, base_lo - old_lo)),
            max(hi, base_hi, base_hi + keep * max(0.0, old_hi - base_hi)),
        )
    return out


def refit_scaler(scaler: Scaler, windows: np.ndarray) -> tuple[Scaler, bool]:
    """The scaler a candidate trained on ``windows`` uses, and whether it is fresh: refitted on them when
    their readings sit far outside what ``scaler`` knew, else ``scaler`` itself. Which features are centred
    stays the model's (overlapping windows' readings side by side are no time series to decide it on)."""
    readings = windows.reshape(-1, windows.shape[-1])
    if _moved(scaler, readings):
        return Scaler.fit(readings, centred=scaler.centred), True
    return scaler, False


def _moved(scaler: Scaler, readings: np.ndarray) -> bool:
    """Whether recent readings sit far outside what the scaler was fitted on (in its own units). Centred
    features are expected to wander away: they are left out."""
    mean = np.asarray(scaler.mean, np.float64)
    scale = np.asarray(scaler.scale, np.float64)
    z_mean = np.abs(readings.mean(axis=0) - mean) / scale
    spread = readings.std(axis=0) / scale
    fixed = scaler.centre_mask() == 0
    return bool(np.any(fixed & ((z_mean > 3.0) | (spread > 3.0) | ((spread < 1 / 3) & (spread > 0)))))


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
                serving=serving, now_ms=now_ms,
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
                    bundle, windows, self.store, self.training, self.config, max_batch=self.max_batch, serving=serving,
                    now_ms=now_ms,
                )
            except Exception as exc:  # a failed refit must never stop scoring
                detector.refits["discarded"] += 1
                log.warning("refit of %s failed (%s: %s): scoring goes on with it", bundle.version, type(exc).__name__, exc)
            finally:
                self._busy = False

        self._pool.submit(work)
