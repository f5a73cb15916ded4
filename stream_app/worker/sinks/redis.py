"""The Redis sink: alerts and device statuses, written in the background, safe to write twice.

Redis layout (prefix ``floorwatch`` by default):

* ``<prefix>:alerts``               stream of every alert, capped at ``redis_stream_maxlen``
* ``<prefix>:alerts:<device>``      stream of one device's alerts, capped likewise, expires ``device_ttl_s``
  after its last alert
* ``<prefix>:device:<device>``      hash: last_score, state, last_reading_ts, model_version, updated_at;
  expires ``device_ttl_s`` after its last write
* ``<prefix>:alert-ids:<alert_id>`` de-duplication marker holding the alert (feedback.py looks alerts up
  by id there), expires after ``redis_alert_id_ttl_s``

Alerts are written by one Lua script that adds them only if their id is new, so at-least-once
redelivery never shows a Redis reader the same alert twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from stream_app.worker.breaker import CircuitBreaker
from stream_app.worker.history import ScoreHistory
from stream_app.contracts import Alert, iso_ms, to_epoch_ms
from stream_app.pipeline.detector import DeviceStatus
from stream_app.pipeline.episodes import OpenEpisode
from stream_app.worker.sinks.base import AlertSink, Statuses

log = logging.getLogger(__name__)

_ADD_ALERT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'alert_id', ARGV[4], 'alert', ARGV[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'alert_id', ARGV[4], 'alert', ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  return 1
end
return 0
"""


# Device statuses per pipeline (see RedisSink._flush). Building and parsing one holds the event loop:
# 1,000 (with the score history) held a batch's scoring and alerts up for tens of ms once a second
# (floorwatch_batch_stage_seconds, the bench's latency runs); 100 hold it a few ms.
_STATUS_CHUNK = 100


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:alerts"

    def device_alerts(self, device_id: str) -> str:
        return f"{self.prefix}:alerts:{device_id}"

    def device(self, device_id: str) -> str:
        return f"{self.prefix}:device:{device_id}"

    def alert_id(self, alert_id: str) -> str:
        return f"{self.prefix}:alert-ids:{alert_id}"

    def adaptation(self, device_id: str) -> str:
        """What the detector learnt of the device (worker/adaptation.py)."""
        return f"{self.prefix}:adapt:{device_id}"


class RedisSink(AlertSink):
    """Writes alerts and device status to Redis; buffers (bounded) while Redis is unreachable.

    The worker only hands it a batch (``add``, ``add_statuses``, ``flush``: ``submit``); ``run``
    writes in the background, behind a circuit breaker that opens on the first failure or timeout
    and probes once a second until Redis answers. So its ``flush`` never waits on Redis, nor fails.
    """

    name = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        stream_maxlen: int = 10_000,
        id_ttl_s: int = 7 * 24 * 3600,
        max_pending: int = 100_000,
        on_drop: Callable[[], None] | None = None,
        on_pending: Callable[[int], None] | None = None,
        status_interval_s: float = 1.0,
        probe_interval_s: float = 1.0,
        probe_timeout_s: float = 0.5,
        device_ttl_s: int = 7 * 24 * 3600,
        history: ScoreHistory | None = None,
        on_written: Callable[[float], None] | None = None,
    ) -> None:
        self.device_ttl_s = device_ttl_s
        self.history = history
        self.client = client
        self.keys = RedisKeys(prefix)
        self.stream_maxlen = stream_maxlen
        self.id_ttl_s = id_ttl_s
        self._add_alert = client.register_script(_ADD_ALERT)
        # Alerts not yet written, oldest first. Bounded: past the bound the oldest are dropped
        # from Redis only (they are on the alerts topic already) and counted.
        self._pending: deque[Alert] = deque()
        self.max_pending = max_pending
        self.dropped = 0
        self._on_drop = on_drop  # e.g. a metrics counter's inc
        self._on_pending = on_pending  # e.g. a metrics gauge's set, after each batch
        # Called with the seconds from the oldest alert's submit to the write that emptied the buffer.
        self._on_written = on_written
        self._oldest_submit: float | None = None
        # The batch in hand (add, add_statuses), submitted by flush.
        self._batch: list[Alert] = []
        self._batch_statuses: list[Statuses] = []
        self.written = 0
        # The worker's batch handler and its flush timer both write; one flush at a time, or two
        # would send the same buffered alerts and then both remove them.
        self._lock = asyncio.Lock()
        self.breaker = CircuitBreaker(probe_interval_s)
        self.probe_timeout_s = probe_timeout_s
        self._wake: asyncio.Event | None = None
        # Device hashes are written at most once per ``status_interval_s`` (their latest status):
        # one HSET per device per micro-batch was the sink's largest cost on the hot path.
        self.status_interval_s = status_interval_s
        self._statuses: dict[str, tuple[DeviceStatus, str]] = {}
        self._statuses_flushed = -float("inf")

    async def add(self, alert: Alert) -> None:
        self._batch.append(alert)

    def add_statuses(self, statuses: Statuses) -> None:
        self._batch_statuses.append(statuses)

    async def flush(self) -> None:
        alerts, self._batch = self._batch, []
        for statuses in self._batch_statuses:
            self._buffer((), statuses)
        self._batch_statuses = []
        self.submit(alerts, {})
        if self._on_pending is not None:
            self._on_pending(self.pending)

    def abandon(self) -> None:
        self._batch, self._batch_statuses = [], []

    def submit(self, alerts: Collection[Alert], statuses: Mapping[str, Iterable[DeviceStatus]]) -> None:
        """Buffer a batch's alerts and statuses for the background writer (``run``): never waits on
        Redis, so a slow or hung Redis cannot hold up scoring."""
        if alerts and self._oldest_submit is None:
            self._oldest_submit = time.perf_counter()
        self._buffer(alerts, statuses)
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """The background writer, until cancelled: writes what was submitted as soon as it can, and
        the latest device statuses once per ``status_interval_s``."""
        self._wake = asyncio.Event()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.status_interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.write((), {})

    async def write(self, alerts: Iterable[Alert], statuses: Mapping[str, Iterable[DeviceStatus]]) -> bool:
        """Write alerts (idempotently) and statuses, keyed by the model version that scored those
        devices (asset groups have their own); return False if Redis is unavailable now.

        While the breaker is open this returns at once (everything stays buffered), but for one
        probe per ``probe_interval_s``: a PING bounded by ``probe_timeout_s``.
        """
        self._buffer(alerts, statuses)
        now = time.monotonic()
        due = now - self._statuses_flushed >= self.status_interval_s
        if self.breaker.closed and not (self._pending or (due and self._statuses)):
            return True
        if not self.breaker.closed and not self.breaker.probe_due():
            return False
        async with self._lock:
            try:
                if not self.breaker.closed:
                    await asyncio.wait_for(self.client.ping(), self.probe_timeout_s)
                if due:
                    # Swap first: statuses merged while the pipeline is in flight wait for the next flush.
                    latest, self._statuses, self._statuses_flushed = self._statuses, {}, now
                    try:
                        await self._flush(list(latest.values()))
                    except BaseException:
                        self._statuses = {**latest, **self._statuses}
                        raise
                else:
                    await self._flush([])
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                # Once per outage, not once per batch. Only the exception's type: its text may
                # carry the server address, and nothing here may carry credentials.
                if self.breaker.failure():
                    log.warning("Redis unavailable (%s); buffering alerts (at most %d)", type(exc).__name__, self.max_pending)
                return False
        if self.breaker.success():
            log.warning("Redis available again; buffered alerts written (%d dropped so far)", self.dropped)
        return True

    def _buffer(self, alerts: Iterable[Alert], statuses: Mapping[str, Iterable[DeviceStatus]]) -> None:
        for alert in alerts:
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self.dropped += 1
                if self._on_drop is not None:
                    self._on_drop()
            self._pending.append(alert)
        for version, group in statuses.items():
            for status in group:
                self._statuses[status.device_id] = (status, version)

    def trip(self) -> None:
        """Open the breaker from outside (a read on the hot path timed out)."""
        if self.breaker.failure():
            log.warning("Redis did not answer in time; buffering alerts (at most %d)", self.max_pending)

    async def _flush(self, statuses: list[tuple[DeviceStatus, str]]) -> None:
        if self._pending:
            await self._flush_alerts()
        # Statuses in pipelines of a bounded size: building and parsing one runs on the event loop,
        # and tens of thousands in one go held scoring up for a second (measured with 1M devices).
        # Alerts handed over meanwhile go first, between two pipelines: they are what is waited for.
        for start in range(0, len(statuses), _STATUS_CHUNK):
            if self._pending and start:
                await self._flush_alerts()
            pipe = self.client.pipeline(transaction=False)
            updated_at = iso_ms(_now_ms())
            for status, model_version in statuses[start : start + _STATUS_CHUNK]:
                mapping: dict[str, str] = {
                    "state": status.state,
                    "last_reading_ts": iso_ms(status.last_reading_ms),
                    "model_version": model_version,
                    "updated_at": updated_at,
                }
                if status.last_score is not None:
                    mapping["last_score"] = f"{status.last_score:.6g}"
                key = self.keys.device(status.device_id)
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, self.device_ttl_s)
                if self.history is not None:  # the console's score history, in the same pipeline
                    self.history.add(pipe, status, model_version)
            await pipe.execute()

    async def _flush_alerts(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        batch = list(self._pending)
        for alert in batch:
            # A Script in a pipeline is (re)loaded by execute() when the server lacks it (SCRIPT
            # EXISTS + LOAD), so a restarted Redis with an empty script cache is fine.
            await self._add_alert(
                keys=[self.keys.alert_id(alert.alert_id), self.keys.alerts, self.keys.device_alerts(alert.device_id)],
                args=[alert.model_dump_json(), self.stream_maxlen, self.id_ttl_s, alert.alert_id, self.device_ttl_s],
                client=pipe,
            )
        # Connection errors raise (everything stays buffered); a command's own error comes back
        # in its slot, so one failed alert stays buffered without holding back the others.
        results = await pipe.execute(raise_on_error=False)
        failed = {id(alert) for alert, result in zip(batch, results) if isinstance(result, Exception)}
        done = {id(alert) for alert in batch} - failed
        # Remove by identity: alerts may have been appended (or the oldest dropped) meanwhile.
        self._pending = deque(a for a in self._pending if id(a) not in done)
        self.written += len(done)
        if not self._pending and self._oldest_submit is not None:
            if self._on_written is not None:
                self._on_written(time.perf_counter() - self._oldest_submit)
            self._oldest_submit = None
        if failed:
            error = next(r for r in results if isinstance(r, Exception))
            raise RedisError(f"{len(failed)} alert write(s) failed: {type(error).__name__}")

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def available(self) -> bool:
        """False from a failed or timed-out call until a probe or write succeeds (the breaker is open)."""
        return self.breaker.closed

    async def open_episodes(self, device_ids: Sequence[str]) -> dict[str, OpenEpisode]:
        """Each device's episode that its last alert left open, if any: one pipelined round trip."""
        if not device_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for device in device_ids:
            pipe.xrevrange(self.keys.device_alerts(device), count=1)
        found: dict[str, OpenEpisode] = {}
        for device, entries in zip(device_ids, await pipe.execute()):
            if not entries:
                continue
            try:
                episode = Alert.model_validate_json(entries[0][1].get(b"alert", b"")).episode
            except ValidationError:
                # Not an alert this version can read: the device starts afresh rather than every
                # batch with its readings failing here.
                log.warning("last alert of %s unreadable: its episode, if open, is not resumed", device)
                continue
            if episode.state in ("open", "update"):
                found[device] = OpenEpisode(
                    episode.episode_id, to_epoch_ms(episode.started_at), episode.peak_ratio, episode.windows
                )
        return found


async def recent_alerts(client: aioredis.Redis, prefix: str, device_id: str | None, count: int) -> list[Alert]:
    """The newest alerts, newest first, from the global or a device's stream."""
    keys = RedisKeys(prefix)
    entries = await client.xrevrange(keys.device_alerts(device_id) if device_id else keys.alerts, count=count)
    return [Alert.model_validate_json(fields[b"alert"]) for _, fields in entries]


def _now_ms() -> int:
    return int(time.time() * 1000)
