"""Threshold calibration on held-out normal windows.

Calibration and scoring share one definition of a window's score (see ``Thresholds``), so a
threshold calibrated here means the same thing in the worker and in evaluation.
"""

from __future__ import annotations

import numpy as np

from stream_app.models.store import Thresholds
from stream_app.pipeline.line_methods import DEFAULT_EWMA_ALPHA, line_method

DEFAULT_QUANTILE = 0.999
DEFAULT_MULTIPLIER = 1.25
# The level envelope is widened more than the score threshold: window means of slowly drifting
# machines are strongly autocorrelated, so one excursion lasts many windows.
ENVELOPE_MARGIN = 1.6


def calibrate(
    validation_errors: np.ndarray,
    features: list[str],
    *,
    window_means: np.ndarray | None = None,
    window_ranges: np.ndarray | None = None,
    stuck_run: int | None = None,
    repeats: tuple[np.ndarray, int] | None = None,
    readings: np.ndarray | None = None,
    held_out: np.ndarray | None = None,
    peak_errors: np.ndarray | None = None,
    quantile: float = DEFAULT_QUANTILE,
    multiplier: float = DEFAULT_MULTIPLIER,
    method: str = "quantile",
    ewma_alpha: float = DEFAULT_EWMA_ALPHA,
) -> Thresholds:
    """Thresholds from per-feature raw errors (n, F) of normal windows the model never trained on.

    ``window_means`` (n, F), the same windows' means in sensor units, gives the level envelope:
    each feature's central ``family_quantile(quantile, F)`` range, widened by ``ENVELOPE_MARGIN`` around
    its centre.
    ``window_ranges`` (m, F), max - min of normal runs of ``stuck_run`` readings, limits the stuck check to features that
    never sat still for a whole normal window.
    ``peak_errors`` (n, F), the same windows' largest absolute errors, gives the peak line: the window's
    largest relative peak at ``quantile`` x ``multiplier``, beside whichever method sets ``threshold``.
    ``repeats``: (per-feature count of consecutive equal readings, number of consecutive pairs) in normal
    data; it sets each feature's stuck run (``stuck_runs``), see ``stuck_runs``. ``readings`` (n, F), the normal
    readings in time order that ``repeats`` counted, gives the values each feature rested at (``resting_values``)
    and lengthens the stuck run of a feature that held many values (``held_runs``); with ``held_out`` (k, T, F),
    the validation windows in sensor units, it gives a lone sensor's jump line (``jump_lines``).
    ``method``: a name in ``line_methods.METHODS``, which calibrates the line (``threshold``,
    ``feature_thresholds``, ``ewma_alpha``, ``z``). Errors must be in time order for "dynamic".
    """
    if validation_errors.ndim != 2 or len(validation_errors) < 10:
        raise ValueError("calibration needs at least 10 validation windows")
    if not 0.5 <= quantile < 1.0:
        raise ValueError("quantile must be in [0.5, 1)")
    line = line_method(method)
    if not 0.0 < ewma_alpha <= 1.0:
        raise ValueError("ewma_alpha must be in (0, 1]")
    reference = np.median(validation_errors, axis=0)
    reference = np.where(reference > 1e-9, reference, 1e-9)
    relative = validation_errors / reference
    fields = line.calibrate(relative, features, quantile=quantile, multiplier=multiplier, ewma_alpha=ewma_alpha)
    # A sensor that never moved while calibrating (a flat recording) has errors of exactly 0, so its lines
    # would be 0 and every verdict 0 / 0. Any data with a spread has lines above the multiplier (relative
    # errors have a median of 1.0 by construction); the degenerate ones get that.
    fields["threshold"] = _positive(fields["threshold"], multiplier)
    fields["feature_thresholds"] = {k: _positive(v, multiplier) for k, v in fields["feature_thresholds"].items()}
    peak_reference = peak_threshold = None
    if peak_errors is not None:
        peak_ref = np.median(peak_errors, axis=0)
        peak_ref = np.where(peak_ref > 1e-9, peak_ref, 1e-9)
        peak_reference = peak_ref.astype(float).tolist()
        peak_threshold = _positive(float(np.quantile((peak_errors / peak_ref).max(axis=1), quantile) * multiplier), multiplier)
    stuck = None
    if window_ranges is not None:
        moves = np.asarray(window_ranges) > 0  # (windows, F)
        stuck = [f for j, f in enumerate(features) if moves[:, j].all()]
    runs = stuck_runs(*repeats, features) if repeats is not None else {}
    if readings is not None:
        runs = held_runs(readings, runs, features)
    return Thresholds(
        method=method,
        quantile=quantile,
        multiplier=multiplier,
        feature_reference=reference.astype(float).tolist(),
        feature_envelope=_envelope(window_means, features, family_quantile(quantile, len(features)), ENVELOPE_MARGIN)
        if window_means is not None
        else {},
        stuck_features=stuck,
        stuck_run=stuck_run,
        stuck_runs=runs,
        resting_values=resting_values(readings, runs, features) if readings is not None else {},
        jump_lines=jump_lines(readings, features, held_out=held_out) if readings is not None else {},
        peak_reference=peak_reference,
        peak_threshold=peak_threshold,
        **fields,
    )


# A run this unlikely in normal data (per window position) is a stuck sensor, not chance.
STUCK_CHANCE = 1e-7
MIN_STUCK_RUN = 3


def stuck_runs(equal_pairs: np.ndarray, pairs: int, features: list[str], *, longest: int = 10_000) -> dict[str, int]:
    """Per feature, how many equal readings in a row make it stuck: the run whose chance in normal data is
    under ``STUCK_CHANCE``, from the share of consecutive readings that were equal there.

    The share is estimated with a Laplace prior, (equal + 1) / (pairs + 2), so little data gives longer
    runs (a sensor seen for 450 readings without a repeat: 4 readings; for 50: 6), and a quantised sensor
    that often repeats itself gets a run longer than a window (no check at all) instead of false alarms.
    """
    share = (np.asarray(equal_pairs, np.float64) + 1.0) / (pairs + 2.0)
    runs = 1 + np.ceil(np.log(STUCK_CHANCE) / np.log(share))
    return {f: max(MIN_STUCK_RUN, int(r)) for f, r in zip(features, runs) if r <= longest}


# Resting values kept per feature (the detector keeps as many learnt from the stream).
MAX_RESTING_VALUES = 16


def resting_values(
    readings: np.ndarray, runs: dict[str, int], features: list[str], *, most: int = MAX_RESTING_VALUES
) -> dict[str, list[float]]:
    """Per feature with a stuck run, the values it sat at for that run or longer in normal ``readings`` (n, F).

    ``stuck_runs`` reads repeats as independent draws; real sensors cluster them: a server's count metric
    sits at 0 for hours whenever it idles, so runs far longer than "chance" are its normal rest.
    The check should not call a sensor stuck for doing what the training data already showed it doing:
    a run at one of these values is a rest (the detector learns more of them from the stream, see
    ``Detector._note_rest``). Kept: the ``most`` values with the most such runs.
    """
    out: dict[str, list[float]] = {}
    for j, feature in enumerate(features):
        run = runs.get(feature)
        if run is None or len(readings) < run:
            continue
        held, _ = _holds(readings[:, j], run)
        if len(held):
            values, counts = np.unique(held, return_counts=True)
            top = values[np.argsort(-counts, kind="stable")[:most]]
            out[feature] = sorted(float(v) for v in top)
    return out


# A sensor that holds whatever value it last read (a gateway reporting on change, a sample-and-hold) is
# stuck only once it holds one this many times longer than it held any but its longest hold in normal data.
HOLD_MARGIN = 2.0


def held_runs(readings: np.ndarray, runs: dict[str, int], features: list[str], *, margin: float = HOLD_MARGIN) -> dict[str, int]:
    """``runs`` lengthened for features that held different values for their stuck run or longer in normal
    ``readings`` (n, F): at least two holds at values held only once, so neither chance (``stuck_runs``)
    nor a resting value (``resting_values``) explains them. Such a feature's run becomes ``margin`` times
    its second-longest such hold (the longest may be an outage in the training data).

    Repeats cluster: a feed that holds each day's value for four hours repeats itself 15% of the time, which
    read as independent draws makes 10 equal readings a stuck sensor, and every day's hold an alert.
    """
    out = dict(runs)
    for j, feature in enumerate(features):
        run = runs.get(feature)
        if run is None or len(readings) < run:
            continue
        values, lengths = _holds(readings[:, j], run)
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        lone = np.sort(lengths[counts[inverse] == 1])
        if len(lone) >= 2:
            out[feature] = max(run, int(np.ceil(margin * lone[-2])))
    return out


# A lone sensor's step between two readings is a jump past this many times its largest step in training.
JUMP_MARGIN = 1.5


def jump_lines(
    readings: np.ndarray, features: list[str], *, held_out: np.ndarray | None = None, margin: float = JUMP_MARGIN
) -> dict[str, float]:
    """For a model of one sensor, its jump line: ``margin`` times the largest step between two consecutive
    normal ``readings`` (n, 1) in training, or within one of the ``held_out`` windows (k, T, 1) kept for
    validation; none for several sensors or a sensor that never moved.

    A model that reads a wandering level for its shape, or whose line has risen with it, lets a spike
    of 6-10 noise sd on top stay under the line; the step into it is still larger than any the stream made.
    Several sensors are left to the model, which knows how they move together (a step of one is a load change).
    """
    if len(features) != 1 or len(readings) < 2:
        return {}
    largest = float(np.abs(np.diff(readings[:, 0].astype(np.float32))).max())
    if held_out is not None and held_out.shape[1] > 1:
        # The validation rows are normal too: a stream's largest benign step is as likely there (a heavy tail
        # met once in the warm-up), and a line from the training split alone would call it a jump ever after.
        largest = max(largest, float(np.abs(np.diff(held_out[..., 0].astype(np.float32), axis=1)).max(initial=0.0)))
    return {features[0]: margin * largest} if largest > 0 else {}


def _holds(series: np.ndarray, run: int) -> tuple[np.ndarray, np.ndarray]:
    """The values a (n,) series held for ``run`` readings in a row or longer, and for how long each time."""
    x = series.astype(np.float32)  # as the detector's windows hold them, so the values compare equal
    ends = np.flatnonzero(np.append(x[1:] != x[:-1], True))  # last index of each run of equal readings
    lengths = np.diff(np.append(-1, ends))
    kept = lengths >= run
    return x[ends[kept]], lengths[kept]


def family_quantile(quantile: float, tests: int) -> float:
    """The per-feature quantile for a check that fails when any of ``tests`` features fails its own.

    The model's line is a quantile of each window's largest feature error, so it is crossed by a
    ``1 - quantile`` share of normal windows however many features there are. The level envelope is
    per feature, and a window fails when any feature leaves its envelope: at the same per-feature
    quantile, 38 server metrics cross it up to 38 times as often as one sensor does. Splitting the
    share among the features (Bonferroni) keeps the whole check's false rate at about ``1 - quantile``.
    """
    return 1.0 - (1.0 - quantile) / max(1, tests)


def _envelope(
    window_means: np.ndarray, features: list[str], quantile: float, multiplier: float
) -> dict[str, tuple[float, float]]:
    low = np.quantile(window_means, 1 - quantile, axis=0)
    high = np.quantile(window_means, quantile, axis=0)
    centre, half = (low + high) / 2, (high - low) / 2 * multiplier
    return {f: (float(c - h), float(c + h)) for f, c, h in zip(features, centre, half)}


def severity(ratio: float) -> str:
    """From a window's distance to normal (1.0 = the alerting line): warning below 1.5, major below 3."""
    if ratio < 1.5:
        return "warning"
    return "major" if ratio < 3.0 else "critical"


def _positive(line: float, floor: float) -> float:
    """``line``, or ``floor`` where it is not above 0 (errors all exactly 0)."""
    return line if line > 0 else floor
