"""Where a consumed record sits, typed.

confluent-kafka types ``Message.topic()``, ``partition()`` and ``offset()`` as optional: they are unset
only on produced messages and on error events, which the consumers here never hand on.
"""

from __future__ import annotations

from confluent_kafka import Message


def partition_of(message: Message) -> tuple[str, int]:
    """The consumed message's (topic, partition)."""
    topic, partition = message.topic(), message.partition()
    assert topic is not None and partition is not None, "not a consumed message"
    return topic, partition


def offset_of(message: Message) -> int:
    offset = message.offset()
    assert offset is not None, "not a consumed message"
    return offset
