"""The one place that builds Redis clients, with one timeout policy.

* Connecting: at most ``CONNECT_TIMEOUT_S`` (2 s). A Redis that takes longer to accept a connection
  is treated as down: the worker's sink buffers (its breaker opens), a command fails in one line.
* Each call: at most ``READ_TIMEOUT_S`` (2 s), so a hung Redis fails a call instead of holding it.
  The worker's hot path has a tighter bound of its own (``redis_budget_s``, by ``asyncio.wait_for``),
  and its writes are off that path. The one exception is a read that waits by design (``XREAD
  BLOCK``): ``blocking=True`` leaves such a client without a read timeout.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from stream_app.config.settings import RedisSettings

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 2.0


def async_redis(settings: RedisSettings, *, blocking: bool = False) -> aioredis.Redis:
    """An asyncio client for ``REDIS_URL`` (credentials percent-encoded; see ``Settings.redis_url_value``)."""
    return aioredis.from_url(
        settings.redis_url_value(),
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=None if blocking else READ_TIMEOUT_S,
    )


def sync_redis(settings: RedisSettings, *, timeout_s: float = READ_TIMEOUT_S) -> redis.Redis:
    """A blocking client for ``REDIS_URL``; ``timeout_s`` bounds connecting and each call."""
    return redis.Redis.from_url(settings.redis_url_value(), socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
