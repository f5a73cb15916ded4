"""The Faust app: the worker's lifecycle and timers around the batch handler.

A consumer-group member (consume.py) reads ``sensor-readings`` (keyed by device, so each device's
readings arrive in order on one partition) in micro-batches across devices (``batch_max_size``
messages or ``batch_max_wait_s``) and hands each to the batch handler (handler.py), which writes
alerts to the alerts topic and Redis and unusable input to the dead-letter topic (sinks/).
Offsets are committed after a batch is handled: delivery is at-least-once, and both alert sinks
are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from faust.app.base import BootStrategy
from redis.exceptions import RedisError

from stream_app.config.kafka_config import faust_broker_settings
from stream_app.config.redis_client import async_redis
from stream_app.config.settings import Settings
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.worker.adaptation import AdaptationStore
from stream_app.worker.consume import ReadingsConsumer
from stream_app.worker.exactly_once import BatchTransaction, transactions_enabled
from stream_app.worker.handler import BatchHandler
from stream_app.worker.lifecycle import Lifecycle
from stream_app.worker.messages import offset_of, partition_of
from stream_app.worker.metrics import Metrics
from stream_app.worker.history import ScoreHistory
from stream_app.worker.sinks.kafka import KafkaAlertSink, KafkaDeadLetterSink, topic_sender
from stream_app.worker.sinks.redis import RedisSink

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, detector: GroupDetector, metrics: Metrics, lifecycle: Lifecycle | None = None
) -> faust.App:
    datadir = settings.state_dir / "faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        settings.app_id,
        **faust_broker_settings(settings.kafka),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_disable_leader=True,
    )
    # Readings come through consume.py; Faust's own consumer would only join a group for nothing.
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    alerts_topic = app.topic(settings.alerts_topic, partitions=settings.alerts_partitions, **raw)
    dlq_topic = app.topic(settings.dlq_topic, partitions=1, **raw)
    transaction = BatchTransaction(settings.kafka) if transactions_enabled(settings.kafka) else None
    redis = settings.redis
    redis_sink = RedisSink(
        async_redis(redis),
        redis.redis_prefix,
        probe_interval_s=redis.redis_probe_interval_s,
        device_ttl_s=redis.redis_device_ttl_s,
        probe_timeout_s=redis.redis_budget_s,
        stream_maxlen=redis.redis_stream_maxlen,
        id_ttl_s=redis.redis_alert_id_ttl_s,
        on_drop=metrics.redis_dropped.inc,
        on_pending=metrics.redis_pending.set,
        on_written=metrics.stage_seconds.labels("redis_write").observe,
        history=ScoreHistory(
            settings.redis_prefix, step_s=settings.history_step_s, points=settings.history_points,
            ttl_s=settings.redis_device_ttl_s, offline_factor=settings.offline_factor, offline_min_s=settings.offline_min_s,
        ),  # fmt: skip
    )
    adaptation = AdaptationStore(redis_sink.client, redis.redis_prefix, ttl_s=redis.redis_device_ttl_s)
    handler = BatchHandler(
        detector,
        [KafkaAlertSink(topic_sender(alerts_topic, transaction)), redis_sink],
        KafkaDeadLetterSink(topic_sender(dlq_topic, transaction)),
        metrics,
        episodes=redis_sink,
        adaptation=adaptation if settings.adapt_save_s > 0 else None,
        resume_budget_s=redis.redis_budget_s,
        lifecycle=lifecycle,
    )

    if lifecycle is not None:
        lifecycle.attach(app)

    @app.task
    async def consume_readings() -> None:
        await ReadingsConsumer(
            settings.kafka, settings.batch, handler.handle, on_failure=handler.dead_letter_failed, metrics=metrics,
            transaction=transaction,
        ).run()

    @app.task
    async def write_redis() -> None:
        # Alerts buffered while Redis was down are written once it answers again, and device
        # statuses of a quiet stream reach their hashes.
        await redis_sink.run()

    @app.timer(interval=_evict_every_s(settings.device_idle_s))
    async def evict_idle_devices() -> None:
        # Bounded state: a fleet that churns through device ids does not grow the worker for ever.
        if settings.device_idle_s > 0:
            evicted = detector.evict_idle(int(time.time() * 1000), int(settings.device_idle_s * 1000))
            metrics.devices_evicted.inc(len(evicted))
            if evicted:
                log.info("dropped the state of %d device(s) idle for %.0f s", len(evicted), settings.device_idle_s)
        metrics.devices.set(detector.devices)

    if settings.adapt_save_s > 0:

        @app.timer(interval=settings.adapt_save_s)
        async def save_adaptation() -> None:
            # What each device has learnt, for the next worker to meet it (worker/adaptation.py). Skipped while
            # Redis is away: a state a few minutes older costs a restarted device little.
            if not redis_sink.available:
                return
            try:
                saved = await adaptation.save(detector, budget_s=redis.redis_budget_s)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                redis_sink.trip()
                log.warning("adaptation states not saved (%s); next try in %.0f s", type(exc).__name__, settings.adapt_save_s)
                return
            metrics.adaptation.labels("saved").inc(saved)

    @app.timer(interval=2.0)
    async def mark_offline() -> None:
        # Silent devices: marked offline in their hashes (history.py); their open episodes are suspended.
        if redis_sink.history is not None:
            await redis_sink.history.mark_offline(redis_sink.client, redis_sink.available, settings.redis_budget_s, redis_sink.trip)

    @app.timer(interval=1.0)
    async def redis_gauges() -> None:
        metrics.redis_pending.set(redis_sink.pending)
        metrics.redis_available.set(1 if redis_sink.available else 0)

    return app


def _evict_every_s(idle_s: float) -> float:
    """A tenth of the idle limit, between 1 s and a minute: a device is dropped at most 10% late."""
    return min(60.0, max(1.0, idle_s / 10)) if idle_s > 0 else 60.0

