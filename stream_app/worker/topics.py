"""Create floorwatch's topics up front with their final partition counts.

The embedded broker cannot add partitions later and auto-creates unknown topics with 4, so
topics are always created explicitly before anything produces to them.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from stream_app.config.kafka_config import confluent_config
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


def _metadata(admin: AdminClient, timeout_s: float):  # type: ignore[no-untyped-def]
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
