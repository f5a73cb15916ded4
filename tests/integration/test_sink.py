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


def _status(device: str, ts: int, ratio: float, score: float = 0.01) -> "DeviceStatus":
    from stream_app.pipeline.detector import DeviceStatus

    values = {"temperature": 0.06, "vibration": 0.075}
    return DeviceStatus(device, ts, "anomalous" if ratio > 1 else "normal", score, line=0.02, ratio=ratio, values=values)


async def test_score_history_keeps_each_steps_farthest_point_and_is_bounded(services: EmbeddedServices) -> None:
    from stream_app.worker.history import ScoreHistory, parse_point

    state = services.state()
    assert state is not None
    client = aioredis.from_url(state.redis_url)
    prefix = f"history-{time.time_ns()}"
    history = ScoreHistory(prefix, step_s=10, points=5, ttl_s=3600)
    sink = RedisSink(client, prefix, status_interval_s=0, history=history)
    try:
        # Step 0: three statuses, the middle one farthest from normal; then steps 1..9.
        for ts, ratio in [(START, 0.2), (START + 1000, 3.0), (START + 2000, 0.5)]:
            assert await sink.write([], {"v1": [_status("press-01", ts, ratio)]})
        for step in range(1, 10):
            assert await sink.write([], {"v1": [_status("press-01", START + step * 10_000, 0.1 * step)]})
        entries = await client.lrange(history.key("press-01"), 0, -1)
        features = (await client.hget(sink.keys.device("press-01"), "features")).decode().split(",")
        points = [parse_point(e, features) for e in entries]

        assert len(points) == 5  # the bound
        assert [p["ts"] for p in points] == [(START + s * 10_000) // 1000 for s in range(9, 4, -1)]
        assert points[0]["values"] == {"temperature": 0.06, "vibration": 0.075}
        assert 0 < await client.ttl(history.key("press-01")) <= 3600

        # The farthest point of a step survives later, nearer ones.
        fresh = ScoreHistory(prefix + "b", step_s=10, points=5)
        sink_b = RedisSink(client, prefix + "b", status_interval_s=0, history=fresh)
        for ts, ratio in [(START, 0.2), (START + 1000, 3.0), (START + 2000, 0.5)]:
            assert await sink_b.write([], {"v1": [_status("press-02", ts, ratio)]})
        (only,) = await client.lrange(fresh.key("press-02"), 0, -1)
        assert parse_point(only, features)["ratio"] == 3.0 and parse_point(only, features)["anomalous"]
    finally:
        await client.aclose()


async def test_a_silent_device_is_marked_offline_and_its_next_reading_clears_it(services: EmbeddedServices) -> None:
    from stream_app.worker.history import ScoreHistory

    state = services.state()
    assert state is not None
    client = aioredis.from_url(state.redis_url)
    prefix = f"offline-{time.time_ns()}"
    history = ScoreHistory(prefix, offline_factor=10, offline_min_s=0.5)
    sink = RedisSink(client, prefix, status_interval_s=0, history=history)
    try:
        assert await sink.write([], {"v1": [_status("press-01", START, 0.1)]})
        assert await sink.write([], {"v1": [_status("press-01", START + 20, 0.1)]})  # 20 ms apart: limit 0.5 s
        assert await history.mark_offline(client, True, 1.0) == []
        time.sleep(0.6)
        assert await history.mark_offline(client, True, 1.0) == ["press-01"]
        assert (await client.hget(sink.keys.device("press-01"), "state")) == b"offline"
        assert await history.mark_offline(client, True, 1.0) == []  # once

        assert await sink.write([], {"v1": [_status("press-01", START + 40, 0.1)]})
        assert (await client.hget(sink.keys.device("press-01"), "state")) == b"normal"
    finally:
        await client.aclose()
