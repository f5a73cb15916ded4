"""Model-health events: a watched figure crossed its limit, or a promoted model was refused.

Events go to the ``model-health`` topic (JSON, key = asset group) and to Redis, where the newest
figures per model version are kept too (``floorwatch models health`` reads them):

* ``<prefix>:model-health``                    stream of events, capped
* ``<prefix>:model-health:figures:<group>``    hash: figure key (``psi:temperature``) -> JSON of the latest figure

Both writes are best-effort and bounded in time: the event is logged whatever happens, and a slow
Redis never holds up scoring.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import RedisError

from stream_app.contracts import iso_ms

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("0b8f7a52-61a4-4f0e-9d3c-7c2e5a1d9e42")

Kind = Literal["drift", "load-refused", "recovered"]


class HealthEvent(BaseModel):
    """One model-health event. ``event_id`` is derived from its content, so a repeat is recognisable."""

    event_id: str
    kind: Kind
    at: str
    group: str
    model_version: str
    feature: str | None = None
    figure: str | None = None  # psi, ks, score_psi, over_line_ratio, alerts_per_device_day
    value: float | None = None
    limit: float | None = None
    message: str

    @classmethod
    def make(cls, kind: Kind, group: str, model_version: str, message: str, *, at_ms: int | None = None,
             feature: str | None = None, figure: str | None = None, value: float | None = None,
             limit: float | None = None) -> HealthEvent:  # fmt: skip
        at_ms = int(time.time() * 1000) if at_ms is None else at_ms
        key = f"{kind}|{group}|{model_version}|{feature}|{figure}|{at_ms}"
        return cls(
            event_id=str(uuid.uuid5(_NAMESPACE, key)), kind=kind, at=iso_ms(at_ms), group=group,
            model_version=model_version, feature=feature, figure=figure,
            value=None if value is None else round(value, 4), limit=limit, message=message,
        )  # fmt: skip


class HealthKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def events(self) -> str:
        return f"{self.prefix}:model-health"

    def figures(self, group: str) -> str:
        return f"{self.prefix}:model-health:figures:{group}"


SendFn = Callable[[bytes, bytes], Awaitable[object]]


class HealthSink:
    """Sends events to the topic (through ``send(key, value)``) and Redis; keeps the latest figures in Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str, send: SendFn | None, *, maxlen: int = 10_000,
                 timeout_s: float = 2.0) -> None:  # fmt: skip
        self.client = client
        self.keys = HealthKeys(prefix)
        self.send = send
        self.maxlen = maxlen
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task] = set()
        self.dropped = 0

    def submit(self, write: Awaitable[None], *, limit: int = 64) -> None:
        """Run a write in the background: the batch path never waits for Redis or the broker here.
        Past ``limit`` writes in flight (a hung Redis) new ones are dropped and counted."""
        if len(self._tasks) >= limit:
            self.dropped += 1
            if asyncio.iscoroutine(write):
                write.close()
            return
        task = asyncio.ensure_future(write)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def emit(self, event: HealthEvent) -> None:
        (log.error if event.kind == "load-refused" else log.warning)("model health: %s", event.message)
        data = orjson.dumps(event.model_dump(mode="json"))
        if self.send is not None:
            try:
                await asyncio.wait_for(self.send(event.group.encode(), data), self.timeout_s)
            except Exception as exc:  # the log line above is the record of last resort
                log.warning("model-health event not sent to Kafka (%s)", type(exc).__name__)
        try:
            await asyncio.wait_for(
                self.client.xadd(self.keys.events, {"event": data}, maxlen=self.maxlen, approximate=True), self.timeout_s
            )
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("model-health event not written to Redis (%s)", type(exc).__name__)

    async def figures(self, group: str, figures: Mapping[str, Mapping[str, object]]) -> None:
        """Replace the group's latest figures (what `models health` shows)."""
        if not figures:
            return
        mapping = {k: orjson.dumps(v) for k, v in figures.items()}
        try:
            await asyncio.wait_for(self.client.hset(self.keys.figures(group), mapping=mapping), self.timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.debug("model-health figures not written (%s)", type(exc).__name__)


async def read_events(client: aioredis.Redis, prefix: str, count: int = 20) -> list[HealthEvent]:
    entries = await client.xrevrange(HealthKeys(prefix).events, count=count)
    return [HealthEvent.model_validate_json(fields[b"event"]) for _, fields in entries]


async def read_figures(client: aioredis.Redis, prefix: str, groups: list[str]) -> dict[str, dict[str, dict]]:
    keys = HealthKeys(prefix)
    out: dict[str, dict[str, dict]] = {}
    for group in groups:
        raw = await client.hgetall(keys.figures(group))
        out[group] = {k.decode(): orjson.loads(v) for k, v in sorted(raw.items())}
    return out
