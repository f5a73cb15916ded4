"""Hot reload: a running worker picks up a promoted model version without a restart.

Once a second (a Faust timer) the worker stats each store's ``CURRENT`` and ``SHADOW`` pointers
(the default model's and each configured asset group's): a cheap ``stat``, the pointer is read only
when it changed. A newly named version is loaded, checked, compiled and warmed on a thread at background priority (``background.py``), off the event
loop, while the old version goes on scoring; the finished detector is installed at the start of
the next batch (``apply``), so a batch is scored by one version, the swap loses no reading, and
the first batch after it is scored by the new version. Compiling is what costs (an LSTM's padded
shapes took ~20 s of CPU on a 2-core machine, and slowed the batches beside it 2-4x); a version of an
architecture the worker already serves reuses the compiled graph with its own weights
(``scorer.compiled_errors``), so its build is the Keras file's load and a warm of milliseconds.

What carries over (``Detector.carry_over_from``): open episodes always; each device's window when
the new model has the same window length and features, else windows refill (T - 1 readings per
device go unscored once).

A version that cannot serve (unreadable files, weights that do not match its card, a sensor the
group's devices do not send) is refused: an error line, a ``load-refused`` model-health event and an
audit-log entry; the worker keeps its version and does not retry until the pointer changes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.background import background_executor
from stream_app.contracts import Reading
from stream_app.pipeline.detector import Detector
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.worker.health import HealthEvent, HealthSink
from stream_app.models.store import ModelBundle, ModelStore, ModelStoreError
from stream_app.models.audit import AuditEntry
from stream_app.pipeline.routing import DEFAULT_GROUP

log = logging.getLogger(__name__)

BuildFn = Callable[[ModelBundle], Detector]


class ModelRefused(Exception):
    """A promoted version this worker will not serve, and why."""


def check_bundle(bundle: ModelBundle, sensors_seen: set[str] | None = None) -> None:
    """Refuse a bundle whose parts disagree, or that needs sensors the group's devices do not send."""
    card, n = bundle.card, len(bundle.card.features)
    if n == 0 or len(set(card.features)) != n:
        raise ModelRefused(f"model {bundle.version}: feature list {card.features} is empty or has repeats")
    if len(bundle.scaler.mean) != n or len(bundle.scaler.scale) != n:
        raise ModelRefused(f"model {bundle.version}: scaler has {len(bundle.scaler.mean)} features, card {n}")
    if len(bundle.scaler.centred) not in (0, n):
        raise ModelRefused(f"model {bundle.version}: scaler centres {len(bundle.scaler.centred)} features, card {n}")
    if len(bundle.thresholds.feature_reference) != n:
        raise ModelRefused(f"model {bundle.version}: thresholds have {len(bundle.thresholds.feature_reference)} features, card {n}")
    if sensors_seen:
        missing = [f for f in card.features if f not in sensors_seen]
        if missing:
            raise ModelRefused(
                f"model {bundle.version} needs sensor(s) {', '.join(missing)} that devices of group "
                f"{bundle.group!r} do not send (seen: {', '.join(sorted(sensors_seen))}); every reading would be dead-lettered"
            )


def check_weights(bundle: ModelBundle, detector: Detector) -> None:
    scorer = detector.scorer
    shape = (getattr(scorer, "window", bundle.card.window), getattr(scorer, "n_features", len(bundle.card.features)))
    if shape != (bundle.card.window, len(bundle.card.features)):
        raise ModelRefused(
            f"model {bundle.version}: weights take windows of {shape[0]} x {shape[1]}, "
            f"card says {bundle.card.window} x {len(bundle.card.features)}"
        )


@dataclass
class _Watched:
    store: ModelStore
    stamp: tuple[int, int, int, int] | None = None
    refused: str | None = None  # a version refused: not retried until the pointer changes
    sensors: set[str] = field(default_factory=set)


class ModelReloader:
    """Watches the stores' pointers; builds new versions off the event loop; installs them between batches."""

    def __init__(
        self,
        model_dir: Path,
        detector: GroupDetector,
        build: BuildFn,
        *,
        health: HealthSink | None = None,
        on_shadow: Callable[[str, Detector | None], None] | None = None,
        shadow_of: Callable[[str], str | None] | None = None,
        pinned_default: bool = False,
    ) -> None:
        self.detector = detector
        self.build = build
        self.health = health
        self.on_shadow = on_shadow  # (group, detector or None): hands a shadow model to shadow.py
        self.shadow_of = shadow_of or (lambda group: None)  # the version a group now shadows
        self._watched = {
            group: _Watched(ModelStore.for_group(Path(model_dir), group))
            for group in (*detector.detectors, *detector.learners)
        }
        # A worker started with ``--model-version`` keeps that default model whatever CURRENT says.
        self.pinned_default = pinned_default
        self._ready: dict[str, Detector] = {}
        self._busy = False
        self.swaps = 0
        # Builds run at background priority: compiling a new architecture must not slow scoring (background.py).
        self._pool = background_executor("floorwatch-reload")

    def observe(self, readings: Sequence[Reading]) -> None:
        """Note which sensors devices send, per group, from a couple of readings a batch (cheap)."""
        if not readings:
            return
        for reading in (readings[0], readings[-1]):
            group = self.detector.router.group_of(reading.device_id)
            watched = self._watched.get(group)
            if watched is not None and len(watched.sensors) < 256:
                watched.sensors.update(reading.values)

    def offer(self, group: str, detector: Detector) -> None:
        """Install ``detector`` for ``group`` at the next batch, as a promoted version would be: the
        way in for a detector built elsewhere (e.g. an online refit of the serving model)."""
        self._ready[group] = detector

    def apply(self) -> list[str]:
        """Install every version built since the last batch; called between batches. Returns the
        groups swapped."""
        swapped = []
        for group, detector in self._ready.items():
            serving = self.detector.detectors.get(group)
            old = serving.model_version if serving is not None else self.detector.learners[group].model_version
            carried = self.detector.install(group, detector)
            self.swaps += 1
            swapped.append(group)
            if serving is None:
                how = "the group's first model after its cold start: windows fill from its next readings"
            elif carried:
                how = "windows and episodes carried over"
            else:
                how = "episodes carried over; windows refill (window or features differ)"
            log.warning("model swapped for group %s: %s -> %s (%s)", group, old, detector.model_version, how)
        self._ready.clear()
        return swapped

    async def poll(self) -> None:
        """Check the pointers; build what changed (one build at a time, off the event loop)."""
        if self._busy:
            return
        self._busy = True
        try:
            for group, watched in self._watched.items():
                stamp = watched.store.pointer_stamp()
                if stamp == watched.stamp:
                    continue
                watched.stamp = stamp
                if not (self.pinned_default and group == DEFAULT_GROUP):
                    await self._current_changed(group, watched)
                if self.on_shadow is not None and group in self.detector.detectors:  # a learning group has no champion
                    await self._shadow_changed(group, watched)
        finally:
            self._busy = False

    def refused(self, group: str) -> str | None:
        """The version of ``group`` last refused (not retried until its pointer changes), or None."""
        watched = self._watched.get(group)
        return watched.refused if watched is not None else None

    async def _current_changed(self, group: str, watched: _Watched) -> None:
        version = watched.store.current()
        detector = self.detector.detectors.get(group)
        serving = detector.bundle.card.version if detector is not None else None  # None: learning (cold start)
        if version is None or version == serving or version == watched.refused:
            return
        try:
            detector = await self._build(watched, version)
        except (ModelRefused, ModelStoreError) as exc:
            watched.refused = version
            await self._refuse(group, version, str(exc))
            return
        watched.refused = None
        self._ready[group] = detector

    async def _shadow_changed(self, group: str, watched: _Watched) -> None:
        assert self.on_shadow is not None
        version = watched.store.shadow_version()
        if version == watched.store.current():
            version = None  # the candidate was promoted: it is the current model now
        shadowing = self.shadow_of(group)
        if version == shadowing:
            return
        if version is None:
            self.on_shadow(group, None)
            return
        try:
            detector = await self._build(watched, version)
        except (ModelRefused, ModelStoreError) as exc:
            log.error("shadow model %s for group %s refused: %s", version, group, exc)
            return
        self.on_shadow(group, detector)

    async def _build(self, watched: _Watched, version: str) -> Detector:
        def load_and_build() -> Detector:
            started = time.perf_counter()
            bundle = watched.store.load(version)
            check_bundle(bundle, watched.sensors)
            loaded = time.perf_counter()
            try:
                detector = self.build(bundle)
            except (ModelRefused, ModelStoreError):
                raise
            except Exception as exc:  # corrupt weights, a rule the model cannot take, ...
                raise ModelRefused(f"model {bundle.version} cannot be loaded: {type(exc).__name__}: {str(exc)[:300]}") from exc
            check_weights(bundle, detector)
            # Where a reload's time goes: a warm of a few ms means the compiled graph was reused.
            warm = getattr(detector.scorer, "warm_seconds", None)
            log.info(
                "model %s for group %s built in %.2fs off the batch path (card and files %.3fs, model and scorer %.2fs%s)",
                version, bundle.group, time.perf_counter() - started, loaded - started, time.perf_counter() - loaded,
                f", of which warming {warm:.3f}s" if warm is not None else "",
            )  # fmt: skip
            return detector

        return await asyncio.get_running_loop().run_in_executor(self._pool, load_and_build)

    async def _refuse(self, group: str, version: str, reason: str) -> None:
        detector = self.detector.detectors.get(group)
        serving = detector.model_version if detector is not None else self.detector.learners[group].model_version
        message = f"promoted model {version} for group {group} refused, still serving {serving}: {reason}"
        watched = self._watched[group]
        try:
            watched.store.audit.append(AuditEntry(action="refused", group=group, version=version, previous=serving, note=reason[:500]))
        except OSError:
            pass
        event = HealthEvent.make("load-refused", group, serving, message)
        if self.health is not None:
            await self.health.emit(event)
        else:
            log.error("model health: %s", message)
