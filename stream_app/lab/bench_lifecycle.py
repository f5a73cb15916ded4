"""``floorwatch bench``'s lifecycle part: what the drift watch and a shadow model cost a worker.

In this process, without Kafka or Redis (the sinks cost the same either way): a backlog of decoded
readings goes through the worker's batch path (detector; then the drift watch; then a shadow
detector of the same model), batch by batch at the worker's batch size, and each configuration's
readings/s is measured. Each step is timed on the same batches in the same pass, so a busy
neighbour on a shared machine hurts each alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from stream_app.background import background_executor
from stream_app.contracts import Reading
from stream_app.worker.drift import DriftLimits, FleetDrift
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.models.store import ModelBundle
from stream_app.pipeline.reservoir import NormalReservoir
from stream_app.pipeline.scorer import Scorer
from stream_app.worker.shadow import ShadowScoring

if TYPE_CHECKING:
    from stream_app.pipeline.detector import Detector


class LifecycleRate(BaseModel):
    config: str  # "plain", "drift watch", "drift watch + shadow model", "adaptation off"
    readings: int
    seconds: float
    readings_per_s: float
    overhead: float  # readings/s of plain / this - 1


def _readings(bundle: ModelBundle, devices: int, per_device: int, seed: int = 0) -> list[Reading]:
    rng = np.random.default_rng(seed)
    mean, scale = np.asarray(bundle.scaler.mean), np.asarray(bundle.scaler.scale)
    t0 = int(time.time() * 1000) - per_device * 1000 - 60_000
    out = []
    for t in range(per_device):
        values = mean + scale * rng.standard_normal((devices, len(mean)))
        for d in range(devices):
            out.append(Reading.model_construct(device_id=f"bench-{d}", ts=t0 + t * 1000,
                                               values=dict(zip(bundle.card.features, map(float, values[d])))))  # fmt: skip
    return out


def lifecycle_overhead(bundle: ModelBundle, build: Callable[[ModelBundle], Detector], *, devices: int = 1000, per_device: int = 64,
                       batch: int = 1024, rounds: int = 3) -> list[LifecycleRate]:  # fmt: skip
    """Readings/s of the batch path plain, with the drift watch, and with the drift watch and a shadow model.

    One pass scores every batch and times its three steps separately (detector, drift watch, shadow
    detector), so a neighbour's load swings hit all three alike; the median of ``rounds`` passes is kept.
    The same pass also times a detector with adaptation off (frozen lines, no refit reservoir) on the
    same batches: "plain" is the worker's detector with its adaptation on.
    """
    from dataclasses import replace

    from stream_app.pipeline.lines import LineConfig
    readings = _readings(bundle, devices, per_device)
    batches = [readings[i : i + batch] for i in range(0, len(readings), batch)]
    passes = []
    for _ in range(rounds):
        fleet = GroupDetector.single(build(bundle))
        drift = FleetDrift(fleet, DriftLimits())
        shadow = ShadowScoring(fleet, None, "bench")
        shadow.set("default", build(bundle))
        adaptive = fleet.detectors["default"]
        adaptive.reservoir = NormalReservoir(adaptive.windows.length, len(adaptive.features), adaptive.config.refit)
        frozen_detector = build(bundle)
        frozen_detector.config = replace(frozen_detector.config, lines=LineConfig(enabled=False))
        frozen_detector.model_lines.config = frozen_detector.level_lines.config = LineConfig(enabled=False)
        frozen = GroupDetector.single(frozen_detector)
        spent = np.zeros(4)
        for chunk in batches:
            t0 = time.perf_counter()
            detections = fleet.process(chunk)
            t1 = time.perf_counter()
            drift.observe(chunk, detections)
            t2 = time.perf_counter()
            shadow.score(chunk, detections)
            t3 = time.perf_counter()
            frozen.process(chunk)
            spent += (t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
        passes.append(spent)
    plain, drift_s, shadow_s, frozen_s = np.median(np.array(passes), axis=0)
    totals = {
        "plain": plain, "drift watch": plain + drift_s, "drift watch + shadow model": plain + drift_s + shadow_s,
        "adaptation off": frozen_s,
    }  # fmt: skip
    return [
        LifecycleRate(config=c, readings=len(readings), seconds=round(float(t), 3), readings_per_s=round(len(readings) / t),
                      overhead=round(float(t / plain - 1.0), 4))  # fmt: skip
        for c, t in totals.items()
    ]


def builder(max_batch: int) -> Callable[[ModelBundle], Detector]:
    """Detectors for the bench: one compiled scorer shared by all (compiling is not what is measured)."""
    from stream_app.pipeline.detector import Detector, DetectorConfig

    scorers: dict[str, Scorer] = {}

    def build(bundle: ModelBundle) -> Detector:
        scorer = scorers.get(bundle.version)
        if scorer is None:
            scorer = scorers[bundle.version] = Scorer.from_bundle(bundle, max_batch=max_batch)
            scorer.warm()
        return Detector(bundle, scorer, DetectorConfig())

    return build


class SwapTiming(BaseModel):
    """Batch times of the worker's detector while a new version loads, compiles and warms on a thread
    (reload.py), and over the batches just after it is installed: "during the swap" is both."""

    batch: int
    new_architecture: bool  # True: nothing compiled to reuse (a version of other units or window)
    build_seconds: float
    parts: dict[str, float]  # seconds of the build's parts: load (Keras file), scorer, warm
    batches_normal: int
    batches_during_build: int
    batches_after_install: int
    p50_ms_normal: float
    p99_ms_normal: float
    p50_ms_during_build: float
    p99_ms_during_build: float
    max_ms_during_build: float
    p99_ms_after_install: float
    p99_ms_during_swap: float  # the build's batches and those after the install together
    p99_ratio: float  # p99 during the swap / p99 normal (the goal: <= 2)


def swap_timing(bundle: ModelBundle, *, max_batch: int = 1024, devices: int = 1000, normal_batches: int = 400,
                after_batches: int = 20, new_architecture: bool = False) -> SwapTiming:  # fmt: skip
    """Score batches in a loop; then load, compile and warm ``bundle`` again on a thread (as a hot
    reload does) while scoring goes on, install it between two batches, score ``after_batches`` more,
    and compare the batch times. ``new_architecture``: forget the compiled graphs first, as for a
    version whose architecture this worker has not compiled (see ``scorer.compiled_errors``)."""
    import asyncio

    from stream_app.pipeline import scorer as scorer_module
    from stream_app.pipeline.detector import Detector, DetectorConfig

    parts: dict[str, float] = {}

    def build() -> Detector:
        t0 = time.perf_counter()
        model = bundle.load_keras()
        t1 = time.perf_counter()
        t = bundle.thresholds
        scorer = Scorer(model, bundle.scaler, reference=t.feature_reference, peak_reference=t.peak_reference, max_batch=max_batch)
        t2 = time.perf_counter()
        scorer.warm()
        parts.update(load=round(t1 - t0, 3), scorer=round(t2 - t1, 3), warm=round(time.perf_counter() - t2, 3))
        return Detector(bundle, scorer, DetectorConfig())

    # Fresh readings for every batch (a repeated one would be a duplicate, dropped unscored), made
    # outside the timed part: device by device, tick after tick.
    rng = np.random.default_rng(0)
    mean, scale = np.asarray(bundle.scaler.mean), np.asarray(bundle.scaler.scale)
    t0 = int(time.time() * 1000) - 3_600_000
    made = 0

    def next_batch() -> list[Reading]:
        nonlocal made
        values = mean + scale * rng.standard_normal((max_batch, len(mean)))
        out = []
        for j in range(max_batch):
            i = made + j
            out.append(Reading.model_construct(device_id=f"bench-{i % devices}", ts=t0 + (i // devices) * 1000,
                                               values=dict(zip(bundle.card.features, map(float, values[j])))))  # fmt: skip
        made += max_batch
        return out

    async def run() -> tuple[list[float], list[float], list[float], float]:
        fleet = GroupDetector.single(build())
        normal: list[float] = []
        during: list[float] = []
        after: list[float] = []

        def one() -> float:
            chunk = next_batch()
            started = time.perf_counter()
            fleet.process(chunk)
            return (time.perf_counter() - started) * 1000

        for _ in range(normal_batches):
            normal.append(one())
            await asyncio.sleep(0)
        # A new architecture: nothing to reuse. The graphs compiled so far stay alive, as in a worker's
        # cache (``scorer._COMPILED_KEEP``): freeing one is not part of a swap.
        kept = dict(scorer_module._COMPILED)
        if new_architecture:
            scorer_module._COMPILED.clear()
        started = time.perf_counter()
        task = asyncio.get_running_loop().run_in_executor(pool, build)  # as reload.py builds
        while not task.done():
            during.append(one())
            await asyncio.sleep(0)
        seconds = time.perf_counter() - started
        fleet.install("default", task.result())
        for _ in range(after_batches):
            after.append(one())
            await asyncio.sleep(0)
        del kept
        return normal, during, after, seconds

    pool = background_executor("bench-reload")
    try:
        normal, during, after, seconds = asyncio.run(run())
    finally:
        pool.shutdown()
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else 0.0  # noqa: E731
    p99_normal, p99_swap = pct(normal, 99), pct(during + after, 99)
    return SwapTiming(
        batch=max_batch, new_architecture=new_architecture, build_seconds=round(seconds, 2), parts=parts,
        batches_normal=len(normal), batches_during_build=len(during), batches_after_install=len(after),
        p50_ms_normal=round(pct(normal, 50), 2), p99_ms_normal=round(p99_normal, 2),
        p50_ms_during_build=round(pct(during, 50), 2), p99_ms_during_build=round(pct(during, 99), 2),
        max_ms_during_build=round(max(during, default=0.0), 2), p99_ms_after_install=round(pct(after, 99), 2),
        p99_ms_during_swap=round(p99_swap, 2), p99_ratio=round(p99_swap / p99_normal, 2) if p99_normal else 0.0,
    )  # fmt: skip
