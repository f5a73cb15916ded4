"""Each device's adaptation state in Redis: saved now and then, taken up by the next worker to meet the device.

The detector's lines and seasonal hours live in the worker's memory (pipeline/adaptation.py says what
they hold). Without this a restarted worker, or the worker a rebalance hands a partition to, warms every
device up again: up to 64 windows without new episodes, hours on a stream sampled every few minutes,
and the seasonal lines' three days. With it the device goes on from its last saved state (at most
``adapt_save_s`` of learning old), if that state is of the serving model's line basis.

Key: ``<prefix>:adapt:<device>``, the state's bytes, expiring like the device's hash. Saving runs on its
own timer, a bounded pipeline of ``CHUNK`` devices at a time, so neither a large fleet nor a hung Redis
holds up a batch, and once more on the way out (``save_on_exit``), so a deploy's restart loses nothing;
loading rides on the handover read the batch already makes for open episodes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stream_app.config.redis_client import async_redis
from stream_app.config.settings import RedisSettings
from stream_app.worker.sinks.redis import RedisKeys

log = logging.getLogger(__name__)

# Devices per pipeline: exporting one costs ~10 us on the event loop, so a chunk holds it ~1 ms.
CHUNK = 100


class StateSource(Protocol):
    """What is saved: the worker's detector (``GroupDetector``)."""

    def known_devices(self, since_ms: int = 0) -> list[str]: ...
    def export_state(self, device_id: str) -> bytes | None: ...


class AdaptationStore:
    def __init__(self, client: aioredis.Redis, prefix: str, *, ttl_s: int) -> None:
        self.client = client
        self.key = RedisKeys(prefix).adaptation
        self.ttl_s = ttl_s
        self.saved_until_ms = 0  # when the last save that went through began: the next one saves what was heard since

    async def load(self, device_ids: Sequence[str]) -> dict[str, bytes]:
        """The saved state of each device that has one: one pipelined round trip."""
        if not device_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for device in device_ids:
            pipe.get(self.key(device))
        return {d: state for d, state in zip(device_ids, await pipe.execute()) if state}

    async def save(self, source: StateSource, *, since_ms: int | None = None, budget_s: float) -> int:
        """Save the state of every device with a reading since ``since_ms`` (the worker's clock; by default
        since the last save that went through), ``CHUNK`` at a time, each pipeline bounded by ``budget_s``
        (asyncio.TimeoutError past it); how many were saved.

        Only devices heard from: one that a rebalance moved to another worker is still in this one's memory,
        and its state here, older every minute, must not overwrite what its new owner saves."""
        started_ms = int(time.time() * 1000)
        devices = source.known_devices(self.saved_until_ms if since_ms is None else since_ms)
        saved = 0
        for start in range(0, len(devices), CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for device in devices[start : start + CHUNK]:
                state = source.export_state(device)  # None: evicted meanwhile, or in a group still learning
                if state is not None:
                    pipe.set(self.key(device), state, ex=self.ttl_s)
                    saved += 1
            await asyncio.wait_for(pipe.execute(), budget_s)
        if since_ms is None:
            self.saved_until_ms = started_ms
        return saved


def save_on_exit(settings: RedisSettings, source: StateSource, *, heard_within_s: float) -> int:
    """The last save, once the worker has stopped consuming: the devices heard from within ``heard_within_s``
    (those a rebalance took away earlier are their new owner's to save), bounded by five Redis budgets in all.
    How many were saved; 0, logged, when Redis does not answer in time."""

    async def save() -> int:
        client = async_redis(settings)
        try:
            store = AdaptationStore(client, settings.redis_prefix, ttl_s=settings.redis_device_ttl_s)
            since_ms = int((time.time() - heard_within_s) * 1000)
            return await asyncio.wait_for(store.save(source, since_ms=since_ms, budget_s=settings.redis_budget_s), 5 * settings.redis_budget_s)
        finally:
            await client.aclose()

    try:
        return asyncio.run(save())
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        log.warning("adaptation states not saved on the way out (%s): the next worker warms those devices up", type(exc).__name__)
        return 0
