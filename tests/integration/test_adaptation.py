"""Adaptation state through the real embedded Redis: what one worker learnt of its devices, the next one to
meet them (a restart, a rebalance) takes up instead of warming up again."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis

from stream_app.config.settings import Settings
from stream_app.lab.embedded import EmbeddedServices
from stream_app.models.store import ModelStore
from stream_app.pipeline.detector import Detector
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.pipeline.scorer import Scorer
from stream_app.worker.adaptation import AdaptationStore
from stream_app.worker.handler import BatchHandler
from stream_app.worker.metrics import Metrics
from stream_app.worker.sinks.memory import MemoryAlertSink, MemoryDeadLetterSink
from stream_app.worker.sinks.redis import RedisSink
from stream_app.worker.start import detector_config
from tests.unit.test_handler import messages

DEVICES = ["pump-1", "pump-2", "pump-3"]


@pytest.fixture(scope="module")
def worker_detector(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """Makes a fresh worker's detector (adaptive lines as the worker's defaults, no refits) on one model."""
    bundle = ModelStore(tiny_model_dir).load()
    scorer = Scorer.from_bundle(bundle, max_batch=64)
    settings = Settings(refit=False)
    return lambda: GroupDetector.single(Detector(bundle, scorer, detector_config(settings.detection, settings.episodes)))


@pytest_asyncio.fixture(loop_scope="function")
async def redis_client(services: EmbeddedServices) -> AsyncIterator[aioredis.Redis]:
    state = services.state()
    assert state is not None
    client = aioredis.from_url(state.redis_url)
    yield client
    await client.aclose()


def worker(detector: GroupDetector, client: aioredis.Redis, prefix: str) -> tuple[BatchHandler, AdaptationStore, Metrics]:
    sink, store, metrics = RedisSink(client, prefix), AdaptationStore(client, prefix, ttl_s=3600), Metrics()
    handler = BatchHandler(detector, [MemoryAlertSink(), sink], MemoryDeadLetterSink(), metrics, episodes=sink, adaptation=store)
    return handler, store, metrics


async def test_a_restarted_worker_takes_up_each_devices_lines(worker_detector, redis_client: aioredis.Redis) -> None:  # type: ignore[no-untyped-def]
    prefix = f"adapt-{time.time_ns()}"
    first = worker_detector()
    handler, store, _ = worker(first, redis_client, prefix)
    features = list(first.detector_for("any").bundle.card.features)
    for device in DEVICES:
        await handler.handle(messages(features, device, 160))
    assert not any(first.detector_for(d).model_lines.learning(d) for d in DEVICES)  # warmed up

    assert await store.save(first, budget_s=5.0) == 3
    assert 0 < await redis_client.ttl(store.key("pump-1")) <= 3600
    assert await store.save(first, since_ms=int(time.time() * 1000) + 60_000, budget_s=5.0) == 0  # none heard since

    restarted, fresh = worker_detector(), worker_detector()
    handler2, _, metrics2 = worker(restarted, redis_client, prefix)
    handler3, _, _ = worker(fresh, redis_client, f"{prefix}-empty")
    later = [m for device in DEVICES for m in messages(features, device, 8, offset=1000)]
    await handler2.handle(later)
    await handler3.handle(later)

    assert metrics2.adaptation.labels("restored")._value.get() == 3
    for device in DEVICES:
        assert not restarted.detector_for(device).model_lines.learning(device)  # goes on: no second warm-up
        assert fresh.detector_for(device).model_lines.learning(device)  # nothing saved: it warms up again


async def test_an_unreadable_state_leaves_the_device_to_learn_afresh(worker_detector, redis_client: aioredis.Redis) -> None:  # type: ignore[no-untyped-def]
    prefix = f"adapt-{time.time_ns()}"
    detector = worker_detector()
    handler, store, metrics = worker(detector, redis_client, prefix)
    await redis_client.set(store.key("pump-1"), b"FWA1 written by something else")
    features = list(detector.detector_for("any").bundle.card.features)

    await handler.handle(messages(features, "pump-1", 8))  # neither raises nor stops the batch

    assert metrics.adaptation.labels("restored")._value.get() == 0
    assert detector.detector_for("pump-1").model_lines.learning("pump-1")


def test_the_last_save_on_the_way_out_holds_the_devices_heard_from_lately(worker_detector, services: EmbeddedServices) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import socket

    from stream_app.worker.adaptation import save_on_exit

    state = services.state()
    assert state is not None
    prefix = f"adapt-{time.time_ns()}"
    detector = worker_detector()
    features = list(detector.detector_for("any").bundle.card.features)

    async def feed() -> None:
        handler = BatchHandler(detector, [MemoryAlertSink()], MemoryDeadLetterSink(), Metrics())
        await handler.handle([m for d in DEVICES for m in messages(features, d, 40)])

    asyncio.run(feed())
    settings = Settings(redis_url=state.redis_url, redis_prefix=prefix, redis_budget_s=0.5)
    assert save_on_exit(settings.redis, detector, heard_within_s=600) == 3
    client = redis.Redis.from_url(state.redis_url)
    assert all(client.get(f"{prefix}:adapt:{d}") for d in DEVICES)
    assert save_on_exit(settings.redis, detector, heard_within_s=-60) == 0  # none heard from in the future

    with socket.socket() as idle:  # a port nothing answers on: bounded, logged, 0
        idle.bind(("127.0.0.1", 0))
        down = Settings(redis_url=f"redis://127.0.0.1:{idle.getsockname()[1]}/0", redis_budget_s=0.2)
        started = time.monotonic()
        assert save_on_exit(down.redis, detector, heard_within_s=600) == 0
        assert time.monotonic() - started < 5
