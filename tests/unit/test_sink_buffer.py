"""The Redis sink's buffer while Redis is unreachable: bounded, oldest dropped first, drops counted."""

from __future__ import annotations

import redis.asyncio as aioredis

from stream_app.lab.embedded import free_port
from stream_app.worker.sinks import RedisSink
from tests.support.builders import alert


async def test_unreachable_redis_buffers_up_to_the_bound_and_counts_what_it_drops() -> None:
    # A real client aimed at a port nobody listens on: every write fails to connect.
    client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    drops: list[int] = []
    sink = RedisSink(client, "buf", max_pending=3, on_drop=lambda: drops.append(1))
    alerts = [alert(f"press-{i:02d}", 1_795_000_000_000 + i) for i in range(5)]

    assert not await sink.write(alerts[:2], {})
    assert not await sink.write(alerts[2:], {})

    assert sink.pending == 3 and sink.dropped == 2 and len(drops) == 2
    assert [a.device_id for a in sink._pending] == ["press-02", "press-03", "press-04"]  # the newest kept
    await client.aclose()
