"""Where a message was read: what the dead letters of it, or of its readings, name as their source."""

from __future__ import annotations

from typing import NamedTuple, Protocol


class KafkaMessage(Protocol):
    """What the worker reads of a consumed message (confluent-kafka's ``Message`` has it)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> str | bytes | None: ...


class MessageContext(NamedTuple):
    """A message's coordinates and bytes, carried beside what was decoded from it.

    A tuple (not a dataclass): one is made per message on the hot path.
    """

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes

    @classmethod
    def of(cls, message: KafkaMessage) -> MessageContext:
        key, value = message.key(), message.value()
        return cls(
            message.topic() or "",
            message.partition(),
            message.offset(),
            key.encode() if isinstance(key, str) else key,
            (value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value) or b"",
        )
