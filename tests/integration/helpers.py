from __future__ import annotations

import time

import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from stream_app.contracts import Alert, iso_ms
from stream_app.config.kafka_config import consumer_config
from stream_app.config.settings import Settings
from stream_app.worker.sinks import RedisKeys


def wait_scored(settings: Settings, last_ts: dict[str, int], timeout_s: float = 90) -> None:
    """Until every device's hash shows its last reading (the worker has consumed everything)."""
    client = redis.Redis.from_url(settings.redis_url_value())
    keys = RedisKeys(settings.redis_prefix)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = [client.hget(keys.device(d), "last_reading_ts") for d in last_ts]
        if all(v is not None and v.decode() >= iso_ms(last_ts[d]) for d, v in zip(last_ts, seen)):
            time.sleep(1.0)  # the batch's alerts are sent before its statuses; allow the topic to settle
            return
        time.sleep(0.25)
    raise AssertionError(f"not all readings were scored in {timeout_s}s")


def redis_alerts(settings: Settings, device_prefix: str) -> list[Alert]:
    client = redis.Redis.from_url(settings.redis_url_value())
    entries = client.xrange(RedisKeys(settings.redis_prefix).alerts)
    alerts = [Alert.model_validate_json(fields[b"alert"]) for _, fields in entries]
    return [a for a in alerts if a.device_id.startswith(device_prefix)]


def topic_messages(settings: Settings, topic: str, idle_s: float = 2.0) -> list[bytes]:
    consumer = Consumer(consumer_config(settings, f"test-read-{time.time_ns()}", **{"enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        out, idle_since = [], time.monotonic()
        while time.monotonic() - idle_since < idle_s:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                out.append(message.value())
                idle_since = time.monotonic()
        return out
    finally:
        consumer.close()


def topic_alerts(settings: Settings, device_prefix: str) -> list[Alert]:
    alerts = [Alert.model_validate(orjson.loads(v)) for v in topic_messages(settings, settings.alerts_topic)]
    return [a for a in alerts if a.device_id.startswith(device_prefix)]
