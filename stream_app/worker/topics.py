"""Create floorwatch's topics up front with their final partition counts.

The embedded broker cannot add partitions later and auto-creates unknown topics with 4, so
topics are always created explicitly before anything produces to them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from stream_app.config.kafka_config import confluent_config, consumer_config
from stream_app.config.settings import KafkaSettings


def topic_partitions(settings: KafkaSettings) -> dict[str, int]:
    return {
        settings.readings_topic: settings.readings_partitions,
        settings.dlq_topic: 1,
        settings.alerts_topic: settings.alerts_partitions,
        settings.labels_topic: 1,
        settings.health_topic: 1,
        settings.feedback_topic: 1,
    }


def _metadata(admin: AdminClient, timeout_s: float) -> ClusterMetadata:
    """The cluster's metadata; a refused login raises ``KafkaLoginError`` within a second or so
    (``poll`` serves the error callback, see kafka_config.py) instead of after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        admin.poll(0)
        try:
            return admin.list_topics(timeout=1.0)
        except KafkaException:
            if time.monotonic() > deadline:
                raise


def ensure_topics(settings: KafkaSettings, *, timeout_s: float = 15.0) -> dict[str, int]:
    """Create missing topics; return the partition count of each (existing ones are left as they are)."""
    admin = AdminClient(confluent_config(settings))
    wanted = topic_partitions(settings)
    existing = _metadata(admin, timeout_s).topics
    missing = [NewTopic(name, num_partitions=n, replication_factor=1 if settings.kafka_profile == "embedded" else -1)
               for name, n in wanted.items() if name not in existing]
    for name, future in (admin.create_topics(missing, request_timeout=timeout_s) if missing else {}).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    # A new topic reaches every broker's metadata a moment after its creation is acknowledged.
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(name in topics for name in wanted) or time.monotonic() > deadline:
            return {name: len(topics[name].partitions) for name in wanted if name in topics}
        time.sleep(0.1)


@contextmanager
def assigned_reader(
    settings: KafkaSettings, topic: str, *, start: Literal["beginning", "end"] | int = "beginning", back: int = 0,
    name: str = "reader", **extra: Any,
) -> Iterator[Consumer]:
    """A consumer assigned every partition of ``topic`` (manual assignment: it joins no group, commits
    nothing, takes no partition from a worker), from its beginning, its end (``back`` > 0: that many
    offsets before it, not before the beginning), or an epoch-ms time (partitions with nothing since
    then are left out). Closed on the way out."""
    group = f"{settings.app_id}-{name}-{uuid.uuid4().hex[:8]}"  # a throwaway id: nothing is committed under it
    consumer = Consumer(consumer_config(settings, group, **{"enable.auto.commit": False, **extra}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(f"topic {topic!r} not found")
        partitions = sorted(meta.partitions)
        if start == "beginning":
            wanted = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        elif start == "end":
            wanted = []
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                wanted.append(TopicPartition(topic, p, max(low, high - back)))
        else:
            found = consumer.offsets_for_times([TopicPartition(topic, p, start) for p in partitions], timeout=10)
            wanted = [tp for tp in found if tp.offset >= 0]  # -1: nothing at or after ``start`` there
        consumer.assign(wanted)
        yield consumer
    finally:
        consumer.close()


def follow(consumer: Consumer, idle_s: float = 0.0, *, poll_s: float = 0.5) -> Iterator[Message]:
    """Each message ``consumer`` gets, as it comes (error events are passed over), until none has come
    for ``idle_s`` (0: never)."""
    last = time.monotonic()
    while True:
        message = consumer.poll(poll_s)
        if message is None or message.error():
            if idle_s and time.monotonic() - last > idle_s:
                return
            continue
        last = time.monotonic()
        yield message


def read_topic(settings: KafkaSettings, topic: str, *, idle_s: float = 2.0, name: str = "reader") -> list[bytes]:
    """Every message value on ``topic`` from its beginning, until none has come for ``idle_s``."""
    with assigned_reader(settings, topic, name=name) as consumer:
        return [message.value() or b"" for message in follow(consumer, idle_s, poll_s=0.2)]
