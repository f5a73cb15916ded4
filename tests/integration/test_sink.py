"""The Redis sink against the real embedded Redis: idempotent writes, and the open episodes a new
worker reads back when it takes over devices."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest_asyncio
import redis.asyncio as aioredis

from stream_app.contracts import to_epoch_ms
from stream_app.lab.embedded import EmbeddedServices
from stream_app.pipeline.episodes import OpenEpisode
from stream_app.worker.sinks import RedisSink
from tests.support.builders import alert

START = 1_795_000_000_000


@pytest_asyncio.fixture(loop_scope="function")  # the client lives in the test's own loop
async def sink(services: EmbeddedServices) -> AsyncIterator[RedisSink]:
    """A sink on the embedded Redis under a key prefix of its own."""
    state = services.state()
    assert state is not None
    client = aioredis.from_url(state.redis_url)
    yield RedisSink(client, f"resume-{time.time_ns()}")
    await client.aclose()


async def test_open_episodes_are_those_whose_last_alert_opened_them(sink: RedisSink) -> None:
    opened = alert("press-01", START)
    closed = alert("press-02", START, state="closed")
    assert await sink.write([opened, alert("press-02", START), closed], {})

    found = await sink.open_episodes(["press-01", "press-02", "press-03"])

    assert found == {
        "press-01": OpenEpisode(
            opened.episode.episode_id, to_epoch_ms(opened.episode.started_at), opened.episode.peak_ratio, opened.episode.windows
        )
    }
    assert await sink.open_episodes([]) == {}


async def test_an_unreadable_last_alert_is_skipped_not_raised(sink: RedisSink) -> None:
    opened = alert("press-01", START)
    assert await sink.write([opened], {})
    await sink.client.xadd(sink.keys.device_alerts("press-02"), {"alert": b"{not json"})
    await sink.client.xadd(sink.keys.device_alerts("press-03"), {"other": b"1"})

    found = await sink.open_episodes(["press-01", "press-02", "press-03"])

    assert set(found) == {"press-01"}


async def test_device_hashes_and_device_streams_expire(sink: RedisSink) -> None:
    from stream_app.pipeline.detector import DeviceStatus

    sink.device_ttl_s = 3600
    assert await sink.write([alert("press-09", START)], {"v0001": [DeviceStatus("press-09", START)]})
    assert 0 < await sink.client.ttl(sink.keys.device("press-09")) <= 3600
    assert 0 < await sink.client.ttl(sink.keys.device_alerts("press-09")) <= 3600
    assert await sink.client.ttl(sink.keys.alerts) == -1  # the global stream is capped, not expired
