"""Event-wise scoring of alert episodes against labelled failures.

An episode detects a failure when it opens on the failure's device between the failure's start
and its end plus ``grace_ms`` (a window still holds failure readings for a while after it
ends). Every other episode is a false alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stream_app.contracts import Alert, FailureLabel, to_epoch_ms
from stream_app.lab.quality import match_events


@dataclass(slots=True)
class FailureOutcome:
    label: FailureLabel
    episodes: int
    detected_ms: int | None

    @property
    def delay_ms(self) -> int | None:
        return None if self.detected_ms is None else self.detected_ms - self.label.start


@dataclass(slots=True)
class EventReport:
    failures: list[FailureOutcome] = field(default_factory=list)
    false_alerts: list[Alert] = field(default_factory=list)
    episodes: int = 0

    @property
    def detected(self) -> int:
        return sum(1 for f in self.failures if f.detected_ms is not None)

    def delays_s(self) -> np.ndarray:
        return np.array([f.delay_ms / 1000 for f in self.failures if f.delay_ms is not None], float)


def match_episodes(labels: list[FailureLabel], alerts: list[Alert], *, grace_ms: int) -> EventReport:
    """Match the opening alerts of episodes to failures (each alert counted once), with ``quality.match_events``."""
    opened = {a.episode.episode_id: a for a in alerts if a.episode.state == "open"}
    report = EventReport(episodes=len(opened))
    used: set[str] = set()
    for label in labels:
        mine = sorted((to_epoch_ms(a.window_end), eid) for eid, a in opened.items() if a.device_id == label.device_id)
        (hit,), matched = match_events(np.array([t for t, _ in mine], np.int64), [(label.start, label.end)], grace=grace_ms)
        used.update(eid for (_, eid), m in zip(mine, matched) if m)
        report.failures.append(FailureOutcome(label, len(hit), int(hit[0]) if len(hit) else None))
    report.false_alerts = [a for eid, a in opened.items() if eid not in used]
    return report
