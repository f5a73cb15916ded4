"""The model lifecycle inside a running worker, attached to the Faust app by a few hooks.

* hot reload of promoted versions (reload.py), every ``reload_interval_s``;
* model-health events (health.py) on the ``model-health`` topic and in Redis;
* operator feedback from the ``alert-feedback`` topic into Redis (feedback.py);
* the drift watch (drift.py): figures as Prometheus gauges and in Redis, events when over a limit;
* shadow scoring of a candidate version beside the current one (shadow.py).

The app calls ``before_batch`` before scoring a batch (a built model is installed there, between
two batches) and ``after_batch`` once the batch is handled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from confluent_kafka import Message

from stream_app.config.redis_client import async_redis
from stream_app.contracts import Reading
from stream_app.pipeline.detector import Detector
from stream_app.worker.cold_start import ColdStarter
from stream_app.worker.drift import DriftLimits, FleetDrift
from stream_app.worker.feedback import FeedbackConsumer, FeedbackStore
from stream_app.worker.dead_letters import message_dead_letter_record
from stream_app.pipeline.group_detector import Detections, GroupDetector
from stream_app.worker.health import HealthSink
from stream_app.config.kafka_config import consumer_config
from stream_app.worker.metrics import Metrics
from stream_app.models.store import ModelBundle
from stream_app.worker.reload import ModelReloader
from stream_app.worker.shadow import ShadowScoring
from stream_app.config.settings import LifecycleSettings, Settings

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        detector: GroupDetector,
        build: Callable[[ModelBundle], Detector],
        metrics: Metrics | None = None,
        *,
        pinned_default: bool = False,
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.build = build
        self.metrics = metrics
        self.pinned_default = pinned_default
        self.drift = FleetDrift(detector, drift_limits(settings.lifecycle)) if settings.drift_watch else None
        self.redis: aioredis.Redis | None = None
        self.health: HealthSink | None = None
        self.reloader: ModelReloader | None = None
        self.shadow: ShadowScoring | None = None
        # Groups with no model yet train their first one from the stream (cold_start.py); hot reload installs it.
        self.cold_start = (
            ColdStarter(detector, settings.model_dir, refused=lambda g: self.reloader.refused(g) if self.reloader else None)
            if detector.learners
            else None
        )

    def attach(self, app: faust.App) -> None:
        """Create the lifecycle's topics, sinks and timers on the worker's app."""
        s = self.settings
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        health_topic = app.topic(s.health_topic, partitions=1, **raw)
        self.redis = async_redis(s.redis)

        async def send_health(key: bytes, value: bytes) -> object:
            return await (await health_topic.send(key=key, value=value))

        self.health = HealthSink(self.redis, s.redis_prefix, send_health)
        self.shadow = ShadowScoring(self.detector, self.redis, s.redis_prefix, health=self.health,
                                    maxlen=s.redis_stream_maxlen, id_ttl_s=s.redis_alert_id_ttl_s)  # fmt: skip
        if s.reload_interval_s > 0:
            self.reloader = ModelReloader(
                s.model_dir, self.detector, self.build, health=self.health, pinned_default=self.pinned_default,
                on_shadow=self.shadow.set, shadow_of=self.shadow.version_of,
            )

            @app.timer(interval=s.reload_interval_s)
            async def watch_models() -> None:
                assert self.reloader is not None
                try:
                    await self.reloader.poll()
                except Exception:  # a bug here must not stop the timer, nor the worker
                    log.exception("model watch failed; trying again in %.0fs", s.reload_interval_s)

        dlq_topic = app.topic(s.dlq_topic, partitions=1, **raw)

        async def feedback_dead_letter(message: Message, reason: str) -> object:
            key, value = message_dead_letter_record(message, reason)  # within the producer's record limit
            return await (await dlq_topic.send(key=key, value=value))

        @app.task
        async def consume_feedback() -> None:
            config = consumer_config(s, f"{s.app_id}-feedback", **{"enable.auto.commit": False, "auto.offset.reset": "earliest"})
            store = FeedbackStore(self.redis, s.redis_prefix)
            await FeedbackConsumer(config, s.feedback_topic, store, feedback_dead_letter).run()

    def before_batch(self, readings: Sequence[Reading]) -> None:
        # The lifecycle never costs the batch itself: a bug here is logged, and scoring goes on.
        try:
            self._before_batch(readings)
        except Exception:
            log.exception("model lifecycle step before the batch failed; the batch is scored as usual")

    async def after_batch(self, readings: Sequence[Reading], detections: Detections) -> None:
        try:
            await self._after_batch(readings, detections)
        except Exception:
            log.exception("model lifecycle step after the batch failed (drift watch or shadow); the batch stands")

    def _before_batch(self, readings: Sequence[Reading]) -> None:
        if self.reloader is not None:
            for group in self.reloader.apply():
                if self.metrics is not None:
                    self.metrics.model_swaps.labels(group).inc()
                    self.metrics.set_models({group: self.detector.detectors[group].model_version})
            self.reloader.observe(readings)

    async def _after_batch(self, readings: Sequence[Reading], detections: Detections) -> None:
        if self.cold_start is not None and self.detector.learners:  # after: the batch's readings are counted
            self.cold_start.check()
        if self.shadow is not None and self.shadow.candidates:
            for candidate, found, counters in self.shadow.score(readings, detections):
                if self.metrics is not None and found.alerts:
                    self.metrics.shadow_alerts.labels(candidate.model_version).inc(len(found.alerts))
                assert self.health is not None
                self.health.submit(self.shadow.write(candidate, found, counters))
        if self.drift is not None:
            result = self.drift.observe(readings, detections)
            for watch in result.evaluated:
                if self.metrics is not None:
                    for key, figure in watch.figures.items():
                        name, _, feature = key.partition(":")
                        value = figure["value"]
                        assert isinstance(value, float)  # drift figures are floats (drift.py)
                        self.metrics.model_drift.labels(watch.group, feature, name).set(value)
                if self.health is not None:
                    self.health.submit(self.health.figures(watch.group, watch.figures))
            for event in result.events:
                if self.health is not None:
                    self.health.submit(self.health.emit(event))


def drift_limits(settings: LifecycleSettings) -> DriftLimits:
    return DriftLimits(
        psi=settings.drift_psi_limit, ks=settings.drift_ks_limit, score_psi=settings.drift_score_psi_limit,
        over_line_ratio=settings.drift_over_line_ratio_limit,
        alerts_per_device_day=settings.drift_alerts_per_device_day_limit, window_s=settings.drift_window_s,
        rate_window_s=settings.drift_rate_window_s, sample_every=settings.drift_sample_every,
        min_samples=settings.drift_min_samples,
    )  # fmt: skip
