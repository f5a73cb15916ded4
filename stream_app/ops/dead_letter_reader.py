"""Reading the dead-letter topic for people: the newest letters, or following new ones, with reasons.

Manual assignment (no consumer group, no commits): reading letters never moves anyone's offsets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import KafkaError, Message
from pydantic import BaseModel, ValidationError

from stream_app.config.settings import KafkaSettings
from stream_app.contracts import DeadLetter, iso_ms
from stream_app.worker.messages import offset_of, partition_of
from stream_app.worker.topics import assigned_reader, follow


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
    def of(cls, message: Message) -> LetterView:
        """The letter a consumed message of the dead-letter topic holds (or what it is, if not a letter)."""
        partition, offset, record_ms = partition_of(message)[1], offset_of(message), message.timestamp()[1]
        value = message.value() or b""
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


def recent_letters(settings: KafkaSettings, count: int = 20, *, wait_s: float = 5.0) -> list[LetterView]:
    """The newest ``count`` dead letters, newest first."""
    found: list[tuple[int, LetterView]] = []
    # Each partition's last 2 x count offsets: written in transactions (the kafka profile), a letter may
    # be followed by a commit marker, which takes an offset too. Partition EOF events say when each is
    # read to its end, so nothing waits for letters that are not there; short fetch waits, as at the
    # end a fetch returns (and the EOF comes) only when its wait is over.
    eof = {"enable.partition.eof": True, "fetch.wait.max.ms": 20}
    with assigned_reader(settings, settings.dlq_topic, start="end", back=2 * count, name="dlq", **eof) as consumer:
        unread = {tp.partition for tp in consumer.assignment()}
        deadline = time.monotonic() + wait_s
        while unread and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    unread.discard(partition_of(message)[1])
                continue
            found.append((message.timestamp()[1], LetterView.of(message)))
    found.sort(key=lambda item: (item[0], item[1].offset), reverse=True)
    return [view for _, view in found[:count]]


def follow_letters(settings: KafkaSettings, *, idle_s: float = 0.0) -> Iterator[LetterView]:
    """New dead letters as they come (from each partition's end)."""
    # Letters are few: a fetch may wait 500 ms for one (the embedded profile's 20 ms polls for nothing).
    with assigned_reader(settings, settings.dlq_topic, start="end", name="dlq", **{"fetch.wait.max.ms": 500}) as consumer:
        for message in follow(consumer, idle_s):
            yield LetterView.of(message)
