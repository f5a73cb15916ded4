"""An event-window score in the style of the Numenta Anomaly Benchmark (NAB), for our own checks.

NAB scores *detections* (points where a detector raises an alarm; here, where an alert episode
opens) against *anomaly windows*, rewarding early detection and penalising false alarms:

- Inside a window only the first detection counts: a true positive weighted by the scaled sigmoid
  of its relative position, ``tp_weight`` at the window's start falling to about 0 at its end.
  Later detections in the same window neither add nor cost.
- A window without a detection costs ``fn_weight``.
- A detection outside every window costs ``fp_weight`` times the scaled sigmoid of its distance
  past the previous window, in that window's widths (close behind a window costs almost nothing,
  three widths or more the full weight); with no window before it, the full weight.
- The raw scores of all series are summed and normalized so that 0 is the null detector (no
  detections: every window missed) and 100 the perfect one (each window detected at its first point,
  nothing else): ``100 * (raw - null) / (perfect - null)``.

Windows here are the labelled runs of each series, optionally widened to NAB's size (``window_share``
of the series' points shared among its windows, centred on each run) and merged where they then
overlap. The standard profile's weights are NAB's: TP 1.0, FP 0.11, FN 1.0. This is a reimplementation
of the published scoring method for our own checks, not NAB's code, and its figures are not NAB results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from stream_app.lab.quality import runs


class Profile(BaseModel):
    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


STANDARD = Profile(name="standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)


def scaled_sigmoid(position: float) -> float:
    """NAB's weight of a point at ``position``: -1 at a window's start -> ~1, its end 0 -> 0, past 3 -> -1."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def label_windows(truth: np.ndarray, *, window_share: float = 0.0) -> list[tuple[int, int]]:
    """(first, last) indices, inclusive, of the anomaly windows of one series.

    Each labelled run; with ``window_share`` > 0 a run shorter than ``window_share * n / runs`` points
    is widened to that length around its centre (NAB sizes its windows at 10% of a file). Windows that
    then overlap or touch are merged.
    """
    spans = runs(truth)
    n = len(truth)
    if window_share > 0 and spans:
        size = window_share * n / len(spans)
        widened = []
        for first, last in spans:
            extra = max(0.0, size - (last - first + 1)) / 2
            widened.append((max(0, int(first - math.floor(extra))), min(n - 1, int(last + math.ceil(extra)))))
        spans = widened
    merged: list[tuple[int, int]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


class SeriesScore(BaseModel):
    raw: float
    windows: int
    detected: int  # windows with at least one detection
    false_detections: int  # detections outside every window


def series_score(
    detections: np.ndarray, windows: list[tuple[int, int]], profile: Profile = STANDARD, *, probation: int = 0
) -> SeriesScore:
    """One series' raw score; detections before index ``probation`` are not scored (NAB's probationary period)."""
    detections = np.asarray(detections, bool)
    rights = np.array([r for _, r in windows], np.int64)
    owner = np.full(len(detections), -1, np.int64)
    for k, (first, last) in enumerate(windows):
        owner[first : last + 1] = k
    max_tp = scaled_sigmoid(-1.0)
    best: dict[int, float] = {}
    false_total, false_count = 0.0, 0
    for i in np.flatnonzero(detections).tolist():
        if i < probation:
            continue
        k = int(owner[i])
        if k >= 0:
            first, last = windows[k]
            position = -(last - i + 1) / (last - first + 1)
            best[k] = max(best.get(k, -math.inf), scaled_sigmoid(position) * profile.tp_weight / max_tp)
            continue
        before = int(np.searchsorted(rights, i, side="left")) - 1  # the last window that ended before i
        if before < 0:
            weight = -1.0
        else:
            first, last = windows[before]
            weight = scaled_sigmoid(abs(i - last) / max(1, last - first))
        false_total += weight * profile.fp_weight
        false_count += 1
    missed = len(windows) - len(best)
    raw = sum(best.values()) + false_total - missed * profile.fn_weight
    return SeriesScore(raw=raw, windows=len(windows), detected=len(best), false_detections=false_count)


class EventWindowScore(BaseModel):
    """NAB-style score over every series: 0 = no detections, 100 = perfect; None without any window."""

    profile: str
    score: float | None
    raw: float
    null: float
    perfect: float
    windows: int
    detected: int
    false_detections: int
    window_share: float


def events_score(
    series: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    profile: Profile = STANDARD,
    window_share: float = 0.0,
    probation_share: float = 0.0,
) -> EventWindowScore:
    """Score ``(ts, detections, truth)`` per series (timestamps in time order; one bool per point each).

    ``probation_share``: the first share of each series' points is not scored (NAB uses 0.15 when a
    detector learns from the file itself; 0 when the scored points follow separate training rows).
    """
    total = SeriesScore(raw=0.0, windows=0, detected=0, false_detections=0)
    for ts, detections, truth in series:
        if not len(ts) == len(detections) == len(truth):
            raise ValueError("timestamps, detections and labels must have one entry per point")
        if len(ts) > 1 and np.any(np.diff(np.asarray(ts)) <= 0):
            raise ValueError("timestamps must be strictly increasing")
        windows = label_windows(np.asarray(truth, bool), window_share=window_share)
        s = series_score(detections, windows, profile, probation=int(probation_share * len(ts)))
        total = SeriesScore(
            raw=total.raw + s.raw, windows=total.windows + s.windows, detected=total.detected + s.detected,
            false_detections=total.false_detections + s.false_detections,
        )  # fmt: skip
    null, perfect = -profile.fn_weight * total.windows, profile.tp_weight * total.windows
    score = 100.0 * (total.raw - null) / (perfect - null) if perfect > null else None
    return EventWindowScore(
        profile=profile.name, score=score, raw=total.raw, null=null, perfect=perfect, windows=total.windows,
        detected=total.detected, false_detections=total.false_detections, window_share=window_share,
    )  # fmt: skip
