"""Following the alerts topic with confluent-kafka, showing each alert id once."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from pydantic import ValidationError

from stream_app.contracts import Alert
from stream_app.config.kafka_config import consumer_config
from stream_app.config.settings import Settings


class SeenIds:
    """The last ``capacity`` alert ids, for dropping redelivered alerts."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, alert_id: str) -> bool:
        if alert_id in self._ids:
            return False
        self._ids[alert_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


def follow_alerts(
    settings: Settings, *, from_beginning: bool = False, max_alerts: int = 0, idle_s: float = 0.0
) -> Iterator[Alert]:
    """Yield alerts from the topic as they come. Uses manual assignment: no group, no commits."""
    # 500 ms, not the embedded profile's 20 ms: the worker writes each alert as a one-record batch,
    # and past ~30,000 of those the embedded broker answers short fetch waits with nothing (see stall.py).
    extra = {"enable.auto.commit": False, "fetch.wait.max.ms": 500}
    consumer = Consumer(consumer_config(settings, f"floorwatch-tail-{uuid.uuid4().hex[:8]}", **extra))
    try:
        meta = consumer.list_topics(settings.alerts_topic, timeout=10).topics.get(settings.alerts_topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(f"topic {settings.alerts_topic!r} not found")
        if from_beginning:
            consumer.assign([TopicPartition(settings.alerts_topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        else:
            partitions = []
            for p in meta.partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(settings.alerts_topic, p), timeout=10)
                partitions.append(TopicPartition(settings.alerts_topic, p, high))
            consumer.assign(partitions)
        seen, shown, last = SeenIds(), 0, time.monotonic()
        while True:
            message = consumer.poll(0.5)
            if message is None or message.error():
                if idle_s and time.monotonic() - last > idle_s:
                    return
                continue
            last = time.monotonic()
            try:
                alert = Alert.model_validate_json(message.value())
            except ValidationError:
                continue  # not an alert of ours; the topic is shared with other producers
            if seen.first_time(alert.alert_id):
                yield alert
                shown += 1
                if max_alerts and shown >= max_alerts:
                    return
    finally:
        consumer.close()
