"""The Kafka sinks: alerts to the alerts topic, dead letters to the dead-letter topic.

Both send through Faust's producer (at-least-once: ``flush`` waits for the broker's acks), or
through the batch's transaction (exactly-once, see exactly_once.py: acknowledged by its commit,
together with the batch's offsets).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson

from stream_app.contracts import Alert
from stream_app.pipeline.decode import Rejection
from stream_app.worker.context import MessageContext
from stream_app.worker.dead_letters import dead_letter_record
from stream_app.worker.exactly_once import BatchTransaction
from stream_app.worker.sinks.base import AlertSink, DeadLetterSink

if TYPE_CHECKING:
    import faust

# Sends one record to one topic; what it returns is awaited for the broker's acknowledgement.
Send = Callable[["bytes | None", bytes], Awaitable[Awaitable[object]]]


def topic_sender(topic: faust.TopicT, transaction: BatchTransaction | None) -> Send:
    """Faust's producer for ``topic`` (at-least-once), or the batch's transaction (exactly-once)."""
    if transaction is None:

        async def send(key: bytes | None, value: bytes) -> Awaitable[object]:
            return await topic.send(key=key, value=value)

        return send
    name = topic.get_topic_name()

    async def send_in_transaction(key: bytes | None, value: bytes) -> Awaitable[object]:
        transaction.send(name, key, value)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)  # acknowledged by the transaction's commit, with the batch's offsets
        return done

    return send_in_transaction


class KafkaAlertSink(AlertSink):
    """The alerts topic, keyed by device (one device's alerts stay in order on one partition)."""

    name = "kafka"

    def __init__(self, send: Send) -> None:
        self._send = send
        self._sent: list[Awaitable[object]] = []

    async def add(self, alert: Alert) -> None:
        self._sent.append(await self._send(alert.device_id.encode(), alert_bytes(alert)))

    async def flush(self) -> None:
        sent, self._sent = self._sent, []
        await _acknowledged(sent)

    def abandon(self) -> None:
        self._sent = []


class KafkaDeadLetterSink(DeadLetterSink):
    """The dead-letter topic: each letter names its source message and fits the producer's limit."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._sent: list[Awaitable[object]] = []

    async def add(self, rejection: Rejection, source: MessageContext) -> None:
        key, value = dead_letter_record(
            rejection, topic=source.topic, partition=source.partition, offset=source.offset, key=source.key
        )
        self._sent.append(await self._send(key, value))

    async def flush(self) -> None:
        sent, self._sent = self._sent, []
        await _acknowledged(sent)

    def abandon(self) -> None:
        self._sent = []


async def _acknowledged(sent: list[Awaitable[object]]) -> None:
    """Wait for every send; raise the first failure. Every outcome is collected, so a batch's other
    failed sends are not logged as exceptions never retrieved (the handler sends them again)."""
    for outcome in await asyncio.gather(*sent, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


def alert_bytes(alert: Alert) -> bytes:
    return orjson.dumps(alert.model_dump(mode="json"))
