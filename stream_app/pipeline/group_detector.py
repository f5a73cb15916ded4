"""One detector per asset group: a micro-batch is split by group, each group's detector scores its
own devices with its own model, and the detections come back together.

A device always maps to one group, so its readings stay in order within its group's share of the
batch, and its window, episode and EWMA state live in exactly one detector.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stream_app.contracts import Alert, Reading
from stream_app.pipeline.cold_start import Learner
from stream_app.pipeline.columns import ReadingColumns
from stream_app.pipeline.detector import Detection, Detector, DeviceStatus, Refused
from stream_app.pipeline.episodes import OpenEpisode
from stream_app.pipeline.routing import DEFAULT_GROUP, GroupRouter


@dataclass(slots=True)
class Detections:
    """One micro-batch's detections, keyed by the model version that made them (``v0003``, ``pumps/v0001``)."""

    by_model: dict[str, Detection]
    # Seconds each model's detector took on its share of the batch (scoring cost, for `models compare`).
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def alerts(self) -> list[Alert]:
        return [a for d in self.by_model.values() for a in d.alerts]

    @property
    def refused(self) -> list[Refused]:
        return [r for d in self.by_model.values() for r in d.refused]

    @property
    def scored(self) -> int:
        return sum(d.scored for d in self.by_model.values())

    @property
    def known_spikes(self) -> int:
        return sum(d.known_spikes for d in self.by_model.values())

    @property
    def duplicates(self) -> int:
        return sum(d.duplicates for d in self.by_model.values())

    @property
    def model_seconds(self) -> float:
        return sum(d.model_seconds for d in self.by_model.values())

    def statuses(self) -> dict[str, Iterable[DeviceStatus]]:
        """Device statuses by model version: each device hash names the model that scored it."""
        return {version: d.statuses.values() for version, d in self.by_model.items()}


class GroupDetector:
    """Routes readings to their asset group's detector; devices in no group go to ``default``."""

    def __init__(self, detectors: Mapping[str, Detector], router: GroupRouter, learners: Mapping[str, Learner] | None = None) -> None:
        learners = dict(learners or {})
        missing = [name for name in (DEFAULT_GROUP, *(g.name for g in router.groups)) if name not in detectors and name not in learners]
        if missing:
            raise ValueError(f"no detector for asset group(s): {', '.join(missing)}")
        self.detectors = dict(detectors)
        # Groups with no model yet (cold start, cold_start.py): their readings are kept to train one, not scored.
        self.learners = learners
        self.router = router
        # Without groups every reading goes to one detector: no routing on the hot path at all.
        self._single = self.detectors[DEFAULT_GROUP] if not router.groups and not learners else None

    @classmethod
    def single(cls, detector: Detector) -> GroupDetector:
        return cls({DEFAULT_GROUP: detector}, GroupRouter(()))

    @property
    def model_versions(self) -> dict[str, str]:
        """Asset group -> the model version its detector serves."""
        return {group: d.model_version for group, d in self.detectors.items()}

    def install(self, group: str, detector: Detector) -> bool:
        """Serve ``group`` with ``detector`` from the next batch on, carrying over the state of the one
        it replaces (see ``Detector.carry_over_from``); True when windows carried over too."""
        if self.learners.pop(group, None) is not None:  # a cold-started group's first model: nothing to carry
            self.detectors[group] = detector
            if not self.router.groups and not self.learners:
                self._single = self.detectors[DEFAULT_GROUP]
            return False
        old = self.detectors[group]
        carried = detector.carry_over_from(old)
        self.detectors[group] = detector
        if self._single is old:
            self._single = detector
        return carried

    def detector_for(self, device_id: str) -> Detector | None:
        """The detector scoring ``device_id``; None while its group is still learning its first model."""
        return self._single or self.detectors.get(self.router.group_of(device_id))

    def unseen(self, device_ids: Iterable[str]) -> list[str]:
        """Devices whose detector has no reading of them yet (none of a learning group: nothing to resume)."""
        if self._single is not None:
            return self._single.unseen(device_ids)
        return [d for d in device_ids if (detector := self.detector_for(d)) is not None and detector.unseen((d,))]

    def evict_idle(self, now_ms: int, idle_ms: int) -> list[str]:
        """Every group's devices idle for ``idle_ms`` (see ``Detector.evict_idle``), dropped."""
        return [d for detector in self.detectors.values() for d in detector.evict_idle(now_ms, idle_ms)]

    @property
    def devices(self) -> int:
        return sum(d.devices for d in self.detectors.values())

    def resume(self, device_id: str, episode: OpenEpisode) -> None:
        detector = self.detector_for(device_id)
        if detector is not None:
            detector.resume(device_id, episode)

    def known_devices(self, since_ms: int = 0) -> list[str]:
        """Every device a scoring group holds state for, with a reading since ``since_ms`` (the worker's clock)."""
        return [d for detector in self.detectors.values() for d in detector.known_devices(since_ms)]

    def export_state(self, device_id: str) -> bytes | None:
        """The device's adaptation state (``Detector.export_state``); None in a learning group or with none."""
        detector = self.detector_for(device_id)
        return None if detector is None else detector.export_state(device_id)

    def restore_state(self, device_id: str, state: bytes) -> bool:
        """``Detector.restore_state`` in the device's group (False while that group learns its first model)."""
        detector = self.detector_for(device_id)
        return detector is not None and detector.restore_state(device_id, state)

    def process(self, readings: Sequence[Reading], *, now_ms: int | None = None) -> Detections:
        if self._single is not None:
            started = time.perf_counter()
            detection = self._single.process(readings, now_ms=now_ms)
            version = self._single.model_version
            return Detections({version: detection}, {version: time.perf_counter() - started})
        # One clock for the whole batch, so every group judges "in the future" alike.
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        columns = ReadingColumns.of(readings)
        buckets: dict[str, list[int]] = {}  # group -> its readings' rows, in order
        group_of = self.router.group_of
        for row, device in enumerate(columns.device_ids):
            group = group_of(device)
            bucket = buckets.get(group)
            if bucket is None:
                buckets[group] = bucket = []
            bucket.append(row)
        out: dict[str, Detection] = {}
        seconds: dict[str, float] = {}
        for group, rows in buckets.items():
            detector = self.detectors.get(group) or self.learners[group]
            started = time.perf_counter()
            out[detector.model_version] = detector.process(columns.take(rows), now_ms=now_ms)
            seconds[detector.model_version] = time.perf_counter() - started
        return Detections(out, seconds)
