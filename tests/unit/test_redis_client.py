"""Redis clients come from one place, with one timeout policy (config/redis_client.py)."""

from __future__ import annotations

from stream_app.config.redis_client import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, async_redis, sync_redis
from stream_app.config.settings import Settings


def test_every_call_is_bounded_but_a_blocking_read() -> None:
    settings = Settings(redis_url="redis://:p%40ss@127.0.0.1:6390/2")  # type: ignore[arg-type]
    client = async_redis(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
    assert (kwargs["port"], kwargs["db"], kwargs["password"]) == (6390, 2, "p@ss")

    blocking = async_redis(settings, blocking=True).connection_pool.connection_kwargs
    assert (blocking["socket_connect_timeout"], blocking["socket_timeout"]) == (CONNECT_TIMEOUT_S, None)

    bounded = sync_redis(settings, timeout_s=0.5).connection_pool.connection_kwargs
    assert (bounded["socket_connect_timeout"], bounded["socket_timeout"]) == (0.5, 0.5)
