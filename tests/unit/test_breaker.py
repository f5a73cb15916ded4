"""The circuit breaker in front of Redis: open on the first failure, one probe per interval."""

from __future__ import annotations

import socket

import redis.asyncio as aioredis

from stream_app.worker.breaker import CircuitBreaker
from stream_app.worker.sinks import RedisSink
from tests.support.builders import alert


def _connections(server: socket.socket) -> int:
    server.setblocking(False)
    n = 0
    while True:
        try:
            server.accept()[0].close()
        except BlockingIOError:
            return n
        n += 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_failure_opens_it_and_a_probe_is_allowed_once_per_interval() -> None:
    clock = Clock()
    breaker = CircuitBreaker(probe_interval_s=1.0, clock=clock)
    assert breaker.closed and not breaker.probe_due()
    assert breaker.failure() and not breaker.closed
    assert not breaker.failure()  # already open: opened once, counted once
    assert not breaker.probe_due()  # right after opening, no probe yet
    clock.now += 1.0
    assert breaker.probe_due() and not breaker.probe_due()  # one probe per interval
    assert breaker.success() and breaker.closed and breaker.trips == 1
    assert not breaker.success()


async def test_a_hung_redis_costs_one_probe_timeout_then_writes_return_at_once() -> None:
    # A listening socket that never answers: what a SIGSTOPped redis-server looks like to a client.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    client = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3, socket_connect_timeout=0.3)
    sink = RedisSink(client, "hang", probe_interval_s=60, probe_timeout_s=0.1)
    try:
        assert not await sink.write([alert("press-01", 1_795_000_000_000)], {})  # times out, opens the breaker
        assert not sink.available
        for i in range(100):
            sink.submit([alert(f"press-{i:02d}", 1_795_000_000_001 + i)], {})
            assert not await sink.write((), {})
        assert sink.pending == 101  # all kept for when Redis answers
        # Only the first write went to the socket: the hundred after it did not wait on Redis at all.
        assert _connections(server) == 1
    finally:
        await client.aclose()
        server.close()
