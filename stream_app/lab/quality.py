"""Detection quality metrics: point-wise (per reading) and event-wise (per labelled failure).

Point-wise, as SKAB scores outlier detection: every reading is a point, labelled anomalous or
normal and predicted anomalous or normal. Event-wise, as operators see it: a labelled failure is a
run of anomalous points on one device; it is detected when an alert episode opens on that device
between the failure's first point and ``grace`` points after its last (a window still holds
failure readings that long). An episode that opens anywhere else is a false alert.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, computed_field


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


class PointMetrics(BaseModel):
    tp: int
    fp: int
    tn: int
    fn: int

    @computed_field
    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @computed_field
    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @computed_field
    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @computed_field
    @property
    def far(self) -> float:
        """False alarm rate: FP / (FP + TN), the share of normal points flagged."""
        return _ratio(self.fp, self.fp + self.tn)

    @computed_field
    @property
    def mar(self) -> float:
        """Missing alarm rate: FN / (FN + TP), the share of anomalous points not flagged."""
        return _ratio(self.fn, self.fn + self.tp)

    def __add__(self, other: PointMetrics) -> PointMetrics:
        return PointMetrics(tp=self.tp + other.tp, fp=self.fp + other.fp, tn=self.tn + other.tn, fn=self.fn + other.fn)


def point_metrics(truth: np.ndarray, predicted: np.ndarray) -> PointMetrics:
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    if truth.shape != predicted.shape:
        raise ValueError(f"truth {truth.shape} and predictions {predicted.shape} differ in shape")
    return PointMetrics(
        tp=int(np.sum(truth & predicted)),
        fp=int(np.sum(~truth & predicted)),
        tn=int(np.sum(~truth & ~predicted)),
        fn=int(np.sum(truth & ~predicted)),
    )


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) indices, inclusive, of each run of True in a 1-d mask."""
    mask = np.asarray(mask, bool)
    if not len(mask):
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def openings(is_open: np.ndarray, opened: np.ndarray | None = None) -> np.ndarray:
    """Indices where an episode opens: where the detector opened one (``opened``, when traced: an episode
    that replaces another at once, a new fault inside an open one, shows only there), or else where
    ``is_open`` turns True; either way also the first point when an episode is open there."""
    is_open = np.asarray(is_open, bool)
    starts = np.array(opened, bool) if opened is not None else is_open & ~np.concatenate([[False], is_open[:-1]])
    starts[:1] |= is_open[:1]
    return np.flatnonzero(starts)


def match_events(opened: np.ndarray, events: Sequence[tuple[int, int]], *, grace: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The one event matcher: per event, the positions of the openings that detect it (from its start to
    its end plus ``grace``), and a mask of the openings that detected any event (the rest are false).

    One device's ascending ``opened`` positions and its events' (start, end), in one unit: sample
    indices here, epoch ms for the demo's alerts (``evaluation.match_episodes``).
    """
    opened = np.asarray(opened)
    used = np.zeros(len(opened), bool)
    hits = []
    for start, end in events:
        hit = (opened >= start) & (opened <= end + grace)
        used |= hit
        hits.append(opened[hit])
    return hits, used


class FailureEvent(BaseModel):
    device_id: str
    start: int  # index of the first labelled point
    end: int  # index of the last labelled point
    start_ms: int
    detected_at: int | None = None  # index where the first matching episode opened
    delay_samples: int | None = None
    delay_s: float | None = None
    episodes: int = 0


class EventMetrics(BaseModel):
    failures: list[FailureEvent]
    episodes: int
    false_episodes: int
    normal_device_hours: float

    @computed_field
    @property
    def detected(self) -> int:
        return sum(1 for f in self.failures if f.detected_at is not None)

    @computed_field
    @property
    def injected(self) -> int:
        return len(self.failures)

    def _delays(self, name: str) -> np.ndarray:
        return np.array([getattr(f, name) for f in self.failures if f.detected_at is not None], float)

    @computed_field
    @property
    def delay_samples_median(self) -> float | None:
        d = self._delays("delay_samples")
        return float(np.median(d)) if len(d) else None

    @computed_field
    @property
    def delay_samples_max(self) -> int | None:
        d = self._delays("delay_samples")
        return int(d.max()) if len(d) else None

    @computed_field
    @property
    def delay_s_median(self) -> float | None:
        d = self._delays("delay_s")
        return float(np.median(d)) if len(d) else None

    @computed_field
    @property
    def delay_s_max(self) -> float | None:
        d = self._delays("delay_s")
        return float(d.max()) if len(d) else None

    @computed_field
    @property
    def false_per_device_hour(self) -> float:
        return self.false_episodes / self.normal_device_hours if self.normal_device_hours > 0 else 0.0


class DeviceTrace(BaseModel):
    """What one device's evaluation needs: per point, time, truth and whether an episode was open."""

    model_config = {"arbitrary_types_allowed": True}

    device_id: str
    ts: np.ndarray  # (n,) epoch ms
    truth: np.ndarray  # (n,) bool
    is_open: np.ndarray  # (n,) bool: the device's episode is open at this point
    opened: np.ndarray | None = None  # (n,) bool: an episode opened at this point (None: read off is_open)


def event_metrics(traces: Sequence[DeviceTrace], *, grace: int) -> EventMetrics:
    """Match episode openings to labelled failures, per device; see the module docstring.

    ``normal_device_hours``: each normal point stands for the device's median sampling interval.
    """
    failures: list[FailureEvent] = []
    episodes = false = 0
    hours = 0.0
    for t in traces:
        opened = openings(t.is_open, t.opened)
        episodes += len(opened)
        events = runs(t.truth)
        hits, used = match_events(opened, events, grace=grace)
        for (start, end), hit in zip(events, hits):
            event = FailureEvent(device_id=t.device_id, start=start, end=end, start_ms=int(t.ts[start]), episodes=len(hit))
            if len(hit):
                at = int(hit[0])
                event.detected_at = at
                event.delay_samples = at - start
                event.delay_s = (int(t.ts[at]) - int(t.ts[start])) / 1000
            failures.append(event)
        false += int((~used).sum())
        if len(t.ts) > 1:
            period_s = float(np.median(np.diff(t.ts))) / 1000
            hours += int((~np.asarray(t.truth, bool)).sum()) * period_s / 3600
    return EventMetrics(failures=failures, episodes=episodes, false_episodes=false, normal_device_hours=hours)


class BestF1(BaseModel):
    """The best point-wise F1 over every threshold on a score, the threshold chosen on the test labels.

    An oracle upper bound, not an operating point: it is what most published tables report (SMD's F1*).
    """

    f1: float
    precision: float
    recall: float
    threshold: float


def best_f1(truth: np.ndarray, score: np.ndarray) -> BestF1:
    """Flag ``score >= threshold`` for each distinct score; keep the threshold with the best F1."""
    truth = np.asarray(truth, bool)
    score = np.nan_to_num(np.asarray(score, float), nan=-np.inf)
    if truth.shape != score.shape:
        raise ValueError(f"truth {truth.shape} and scores {score.shape} differ in shape")
    if not truth.any() or not len(score):
        return BestF1(f1=0.0, precision=0.0, recall=0.0, threshold=float("inf"))
    order = np.argsort(-score, kind="stable")
    s, t = score[order], truth[order]
    tp, fp = np.cumsum(t), np.cumsum(~t)
    last = np.flatnonzero(np.concatenate([s[1:] != s[:-1], [True]]))  # last index of each distinct score
    tp, fp = tp[last], fp[last]
    f1 = 2 * tp / (2 * tp + fp + (truth.sum() - tp))
    i = int(np.argmax(f1))
    return BestF1(f1=float(f1[i]), precision=float(tp[i] / (tp[i] + fp[i])), recall=float(tp[i] / truth.sum()), threshold=float(s[last[i]]))
