"""The Faust app: reads readings in batches, runs the detector on them, sends alerts.

A consumer-group member (consume.py) reads ``sensor-readings`` (keyed by device, so each device's
readings arrive in order on one partition) in micro-batches across devices (``batch_max_size``
messages or ``batch_max_wait_s``), and for each batch: decode -> each asset group's detector on
its own devices (window, score, threshold, episode) -> alerts topic + Redis, unusable input ->
dead-letter topic. Offsets are committed after a batch is handled: delivery is at-least-once,
and both sinks are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import faust
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from confluent_kafka import Message
from faust.app.base import BootStrategy

from stream_app.worker.consume import ReadingsConsumer
from stream_app.contracts import Reading
from stream_app.worker.dead_letters import dead_letter_record
from stream_app.pipeline.decode import Decoded, Rejection, decode
from stream_app.worker.exactly_once import BatchTransaction, transactions_enabled
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.config.kafka_config import faust_broker_settings
from stream_app.worker.lifecycle import Lifecycle
from stream_app.worker.metrics import Metrics
from stream_app.config.settings import Settings
from stream_app.worker.history import ScoreHistory
from stream_app.worker.sinks import RedisSink, alert_bytes

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, detector: GroupDetector, metrics: Metrics, lifecycle: Lifecycle | None = None
) -> faust.App:
    datadir = settings.state_dir / "faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        settings.app_id,
        **faust_broker_settings(settings),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_disable_leader=True,
    )
    # Readings come through consume.py; Faust's own consumer would only join a group for nothing.
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    alerts_topic = app.topic(settings.alerts_topic, partitions=settings.alerts_partitions, **raw)
    dlq_topic = app.topic(settings.dlq_topic, partitions=1, **raw)
    transaction = BatchTransaction(settings) if transactions_enabled(settings) else None
    send = _sender(transaction)
    sink = RedisSink(
        aioredis.from_url(settings.redis_url_value(), socket_timeout=2, socket_connect_timeout=2),
        settings.redis_prefix,
        probe_interval_s=settings.redis_probe_interval_s,
        device_ttl_s=settings.redis_device_ttl_s,
        probe_timeout_s=settings.redis_budget_s,
        stream_maxlen=settings.redis_stream_maxlen,
        id_ttl_s=settings.redis_alert_id_ttl_s,
        on_drop=metrics.redis_dropped.inc,
        history=ScoreHistory(
            settings.redis_prefix, step_s=settings.history_step_s, points=settings.history_points,
            ttl_s=settings.redis_device_ttl_s, offline_factor=settings.offline_factor, offline_min_s=settings.offline_min_s,
        ),  # fmt: skip
    )

    async def handle(messages: list[Message]) -> None:
        started = time.perf_counter()
        readings: list[Reading] = []
        # Each reading's message and its place in it, to dead-letter a refused one with its own bytes.
        origin: dict[int, tuple[Message, Decoded, int]] = {}
        dead = []
        for message in messages:
            decoded = decode(message.value())
            for k, reading in enumerate(decoded.readings):
                origin[id(reading)] = (message, decoded, k)
            readings.extend(decoded.readings)
            dead += [await _to_dlq(send, dlq_topic, message, rejection, metrics) for rejection in decoded.rejections]
        metrics.messages.inc(len(messages))
        metrics.readings.inc(len(readings))
        if lifecycle is not None:
            lifecycle.before_batch(readings)  # a promoted model is swapped in here, between two batches

        # Devices new to this worker (a restart, a rebalance): carry on with the episodes their
        # previous worker left open, so a failure that spans the handover stays one episode.
        unseen = detector.unseen(dict.fromkeys(r.device_id for r in readings))
        if unseen and sink.available:
            await _resume_episodes(detector, sink, unseen, settings.redis_budget_s)
        detection = detector.process(readings)
        for refused in detection.refused:
            message, decoded, k = origin[id(refused.reading)]
            where, part = decoded.part(k)
            original = (message.value() or b"") if part is None else part
            dead.append(await _to_dlq(send, dlq_topic, message, Rejection(where + refused.reason, original), metrics))
        sent = []
        for alert in detection.alerts:
            sent.append(await send(alerts_topic, alert.device_id.encode(), alert_bytes(alert)))
            metrics.alerts.labels(alert.episode.state).inc()
        # Wait for the broker to take every record before this batch's offsets may be committed.
        await asyncio.gather(*dead, *sent)
        # Buffered for the sink's background writer: Redis, slow or hung, never holds up scoring.
        sink.submit(detection.alerts, detection.statuses())

        metrics.duplicates.inc(detection.duplicates)
        metrics.windows.inc(detection.scored)
        metrics.batch_size.observe(detection.scored)
        metrics.batch_seconds.observe(time.perf_counter() - started)
        metrics.redis_pending.set(sink.pending)
        if lifecycle is not None:
            await lifecycle.after_batch(readings, detection)

    async def dead_letter_batch(messages: list[Message], exc: Exception) -> None:
        # A message the worker failed on, alone (a bug, or a sink failing past its retries): it goes
        # to the dead-letter topic with its bytes, so it can be replayed once the cause is fixed.
        # Alerts it may already have sent carry the same ids on replay: the sinks drop the repeats.
        reason = f"the worker failed on this message: {type(exc).__name__}: {str(exc)[:300]}"
        sent = [await _to_dlq(send, dlq_topic, m, Rejection(reason, m.value() or b""), metrics) for m in messages]
        await asyncio.gather(*sent)

    if lifecycle is not None:
        lifecycle.attach(app)

    @app.task
    async def consume_readings() -> None:
        await ReadingsConsumer(
            settings, handle, on_failure=dead_letter_batch, metrics=metrics, transaction=transaction
        ).run()

    @app.task
    async def write_redis() -> None:
        # Alerts buffered while Redis was down are written once it answers again, and device
        # statuses of a quiet stream reach their hashes.
        await sink.run()

    @app.timer(interval=_evict_every_s(settings.device_idle_s))
    async def evict_idle_devices() -> None:
        # Bounded state: a fleet that churns through device ids does not grow the worker for ever.
        if settings.device_idle_s > 0:
            evicted = detector.evict_idle(int(time.time() * 1000), int(settings.device_idle_s * 1000))
            metrics.devices_evicted.inc(len(evicted))
            if evicted:
                log.info("dropped the state of %d device(s) idle for %.0f s", len(evicted), settings.device_idle_s)
        metrics.devices.set(detector.devices)

    @app.timer(interval=2.0)
    async def mark_offline() -> None:
        # Silent devices: marked offline in their hashes (history.py); their open episodes are suspended.
        if sink.history is not None:
            await sink.history.mark_offline(sink.client, sink.available, settings.redis_budget_s, sink.trip)

    @app.timer(interval=1.0)
    async def redis_gauges() -> None:
        metrics.redis_pending.set(sink.pending)
        metrics.redis_available.set(1 if sink.available else 0)

    return app


def _evict_every_s(idle_s: float) -> float:
    """A tenth of the idle limit, between 1 s and a minute: a device is dropped at most 10% late."""
    return min(60.0, max(1.0, idle_s / 10)) if idle_s > 0 else 60.0


async def _resume_episodes(detector: GroupDetector, sink: RedisSink, device_ids: list[str], budget_s: float) -> None:
    # On the batch's path, so bounded: a Redis that does not answer in time opens the sink's breaker.
    try:
        episodes = await asyncio.wait_for(sink.open_episodes(device_ids), budget_s)
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        sink.trip()
        log.warning("open episodes unreadable (%s): %d device(s) start afresh", type(exc).__name__, len(device_ids))
        return
    for device, episode in episodes.items():
        detector.resume(device, episode)
    if episodes:
        log.info("resumed %d open episode(s) of devices new to this worker", len(episodes))


Send = Callable[[faust.TopicT, "bytes | None", bytes], Awaitable[asyncio.Future]]


def _sender(transaction: BatchTransaction | None) -> Send:
    """Faust's producer (at-least-once), or the batch's transaction (exactly-once, see exactly_once.py)."""

    async def send(topic: faust.TopicT, key: bytes | None, value: bytes) -> asyncio.Future:
        if transaction is None:
            return await topic.send(key=key, value=value)
        transaction.send(topic.get_topic_name(), key, value)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)  # acknowledged by the transaction's commit, with the batch's offsets
        return done

    return send


async def _to_dlq(send: Send, topic: faust.TopicT, message: Message, rejection: Rejection, metrics: Metrics) -> asyncio.Future:
    metrics.dead_letters.add(rejection.reason)
    key, value = dead_letter_record(
        rejection, topic=message.topic(), partition=message.partition(), offset=message.offset(), key=message.key()
    )
    return await send(topic, key, value)
