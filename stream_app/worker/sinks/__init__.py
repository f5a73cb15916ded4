"""Where a batch's output goes: the sink interfaces (base.py) and their Kafka, Redis and in-memory forms."""

from stream_app.worker.sinks.base import AlertSink, DeadLetterSink
from stream_app.worker.sinks.redis import RedisKeys, RedisSink, recent_alerts

__all__ = ["AlertSink", "DeadLetterSink", "RedisKeys", "RedisSink", "recent_alerts"]
