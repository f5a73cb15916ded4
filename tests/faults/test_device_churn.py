"""Many distinct one-reading devices (a churning fleet, or a gateway inventing ids): the worker's
memory levels off once idle devices are evicted, and Redis keys expire.

Figures, not asserted timings: worker RSS and Redis key count sampled per 100k devices. Size with
``FLOORWATCH_CHURN_DEVICES`` (default 200,000; the README's figure used 1,000,000).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import redis

from producers.publish import ReadingPublisher, reading_json

from tests.support.services import NORMAL

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DEVICES = int(os.environ.get("FLOORWATCH_CHURN_DEVICES", "200000"))
STEP = 100_000
IDLE_S = 5.0
TTL_S = 60


def test_many_distinct_devices_keep_worker_memory_and_redis_keys_bounded(drill_factory, fault_services, record) -> None:
    drill = drill_factory("churn", device_idle_s=IDLE_S, redis_device_ttl_s=TTL_S)
    worker = drill.start_worker()
    drill.wait_consuming([worker])
    client = redis.Redis.from_url(drill.settings.redis_url_value())
    publisher = ReadingPublisher(drill.settings)
    base_keys = client.dbsize()
    base = worker.counter("readings")
    rss, keys, held = [worker.rss_mb()], [0], []
    ts = int(time.time() * 1000) - 60_000
    rng = np.random.default_rng(3)
    started = time.monotonic()
    for first in range(0, DEVICES, STEP):
        for i in range(first, min(DEVICES, first + STEP)):
            device = f"churn-{i:07d}"
            values = {k: v + float(rng.normal(0, 0.0005)) for k, v in NORMAL.items()}
            publisher.send(device, reading_json(device, ts, values))
            if i % 10_000 == 0:
                publisher.poll()
        publisher.flush(120)
        deadline = time.monotonic() + 600
        while worker.counter("readings") - base < min(DEVICES, first + STEP):
            assert time.monotonic() < deadline and worker.process.poll() is None, worker.tail()
            time.sleep(0.5)
        rss.append(worker.rss_mb())
        keys.append(client.dbsize() - base_keys)
        held.append(worker.metrics().get("floorwatch_devices", 0.0))
    seconds = time.monotonic() - started
    time.sleep(IDLE_S + 3)
    settled_rss, settled_held = worker.rss_mb(), worker.metrics().get("floorwatch_devices", 0.0)
    evicted = worker.counter("devices_evicted")
    time.sleep(TTL_S + 5)
    expired_keys = client.dbsize() - base_keys
    record(
        "many distinct devices",
        load=f"{DEVICES} devices, one reading each, published in steps of {STEP} ({seconds:.0f} s in all)",
        faults=f"none; FLOORWATCH_DEVICE_IDLE_S={IDLE_S:.0f}, FLOORWATCH_REDIS_DEVICE_TTL_S={TTL_S}",
        rss_mb_per_step=[round(r) for r in rss],
        devices_held_per_step=held,
        redis_keys_per_step=keys,
        rss_mb_after_idle=round(settled_rss),
        devices_held_after_idle=settled_held,
        devices_evicted=evicted,
        redis_keys_after_ttl=expired_keys,
    )
    assert evicted >= DEVICES * 0.9 and settled_held < DEVICES * 0.1
    assert expired_keys < DEVICES * 0.01
