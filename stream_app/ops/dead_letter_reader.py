"""Reading the dead-letter topic for people: the newest letters, or following new ones, with reasons.

Manual assignment (no consumer group, no commits): reading letters never moves anyone's offsets.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import BaseModel, ValidationError

from stream_app.config.kafka_config import consumer_config
from stream_app.config.settings import Settings
from stream_app.contracts import DeadLetter, iso_ms
from stream_app.worker.messages import offset_of, partition_of


class LetterView(BaseModel):
    """One dead letter as shown: where it sits, why it was refused, what it was."""

    partition: int
    offset: int
    at: str  # when the worker refused it (the letter's received_at), else the record's timestamp
    key: str | None
    reason: str
    size: int  # bytes of the original message
    source: str  # topic[partition]@offset the original came from
    preview: str  # the original's first characters (text), or "(binary)"

    @classmethod
    def of(cls, partition: int, offset: int, record_ms: int, value: bytes) -> LetterView:
        try:
            letter = DeadLetter.model_validate_json(value)
        except ValidationError:
            return cls(partition=partition, offset=offset, at=iso_ms(max(record_ms, 0)), key=None,
                       reason="(not a floorwatch dead letter)", size=len(value), source="?", preview=_preview(value))  # fmt: skip
        original = letter.original if letter.original is not None else "(binary)"
        size = letter.original_size if letter.original_size is not None else len((letter.original or "").encode())
        return cls(
            partition=partition, offset=offset, at=letter.received_at, key=letter.key, reason=letter.reason, size=size,
            source=f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}", preview=original[:120],
        )  # fmt: skip


def _preview(value: bytes) -> str:
    try:
        return value.decode()[:120]
    except UnicodeDecodeError:
        return "(binary)"


def _consumer(settings: Settings) -> tuple[Consumer, list[int]]:
    extra = {"enable.auto.commit": False, "fetch.wait.max.ms": 500}
    consumer = Consumer(consumer_config(settings, f"floorwatch-dlq-{uuid.uuid4().hex[:8]}", **extra))
    meta = consumer.list_topics(settings.dlq_topic, timeout=10).topics.get(settings.dlq_topic)
    if meta is None or meta.error is not None or not meta.partitions:
        consumer.close()
        raise KafkaException(f"topic {settings.dlq_topic!r} not found")
    return consumer, sorted(meta.partitions)


def recent_letters(settings: Settings, count: int = 20, *, wait_s: float = 5.0) -> list[LetterView]:
    """The newest ``count`` dead letters (of each partition's last ``count``), newest first."""
    consumer, partitions = _consumer(settings)
    try:
        assignment, wanted = [], 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(settings.dlq_topic, p), timeout=10)
            start = max(low, high - count)
            if high > start:
                assignment.append(TopicPartition(settings.dlq_topic, p, start))
                wanted += high - start
        if not assignment:
            return []
        consumer.assign(assignment)
        found: list[tuple[int, LetterView]] = []
        deadline = time.monotonic() + wait_s
        while len(found) < wanted and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            ms = message.timestamp()[1]
            found.append((ms, LetterView.of(partition_of(message)[1], offset_of(message), ms, message.value() or b"")))
        found.sort(key=lambda item: (item[0], item[1].offset), reverse=True)
        return [view for _, view in found[:count]]
    finally:
        consumer.close()


def follow_letters(settings: Settings, *, idle_s: float = 0.0) -> Iterator[LetterView]:
    """New dead letters as they come (from each partition's end)."""
    consumer, partitions = _consumer(settings)
    try:
        assignment = []
        for p in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(settings.dlq_topic, p), timeout=10)
            assignment.append(TopicPartition(settings.dlq_topic, p, high))
        consumer.assign(assignment)
        last = time.monotonic()
        while True:
            message = consumer.poll(0.5)
            if message is None or message.error():
                if idle_s and time.monotonic() - last > idle_s:
                    return
                continue
            last = time.monotonic()
            yield LetterView.of(partition_of(message)[1], offset_of(message), message.timestamp()[1], message.value() or b"")
    finally:
        consumer.close()
