"""Step 0 of a reading's path: batches of messages from the readings topic, committed once handled.

The worker reads ``sensor-readings`` with librdkafka (confluent-kafka) in batches rather than
through a Faust agent's stream. Faust's per-event machinery (one Event, queue hand-off, ack
tracking and future per message) cost about 100 us per message here, which capped a worker at
~8.5k readings/s with its core otherwise idle; ``Consumer.consume`` hands over a thousand messages
in one call from librdkafka's own fetch thread (measured: ~57k readings/s single-message form,
~74k batched, decode and model included). The rest of the worker stays in the Faust app: its
lifecycle and signals, the producer for alerts and dead letters, the timers.

Delivery is at-least-once: offsets are committed after a batch is handled (alerts acknowledged by
the broker, Redis written or buffered), synchronously, so a revoked partition's processed
messages are committed before the next owner reads it and nothing is committed unprocessed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from .exactly_once import BatchTransaction, TransactionAborted, first_offsets
from .kafka_config import consumer_config
from .settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[list[Message]], Awaitable[None]]
# Called with a batch whose handler raised, and the exception: the app dead-letters its messages.
FailureHandler = Callable[[list[Message], Exception], Awaitable[None]]


class ReadingsConsumer:
    """The worker's consumer-group member for the readings topic; ``run`` until cancelled."""

    def __init__(
        self,
        settings: Settings,
        handle: Handler,
        on_failure: FailureHandler | None = None,
        transaction: BatchTransaction | None = None,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.on_failure = on_failure
        # Exactly-once (kafka profile): each batch's output and offsets commit as one transaction.
        self.transaction = transaction
        # Every call into the consumer happens on this one thread, in order: consume blocks
        # there (the event loop stays free) and librdkafka's rebalance callbacks run there too.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="readings-consumer")
        self._consumer = Consumer(
            consumer_config(
                settings,
                settings.app_id,
                **{
                    "enable.auto.commit": False,
                    # A worker that joins after readings were produced still scores them.
                    "auto.offset.reset": "earliest",
                },
            )
        )

    async def run(self) -> None:
        consumer = self._consumer
        await self._call(consumer.subscribe, [self.settings.readings_topic], on_assign=_log_assign, on_revoke=_log_revoke)
        try:
            while True:
                messages = await self._call(self._next_batch)
                usable = [m for m in messages if _usable(m)]
                if not usable:
                    continue
                if self.transaction is not None:
                    await self._call(self.transaction.begin)
                try:
                    await self.handle(usable)
                except Exception as exc:  # the worker never stops on one bad batch
                    log.exception("batch of %d messages failed; they go to the dead-letter topic", len(usable))
                    if self.transaction is not None:  # drop what the batch sent; only its dead letters go out
                        await self._call(self.transaction.abort)
                        await self._call(self.transaction.begin)
                    await self._fail(usable, exc)
                await self._commit(usable)
        finally:
            await asyncio.shield(self._close())

    def _next_batch(self) -> list[Message]:
        """What librdkafka has already fetched, up to ``batch_max_size``; if nothing, the first
        message to arrive within ``batch_max_wait_s`` and whatever came with it.

        So a batch never waits to fill: under load the fetched backlog makes batches large, and
        a quiet stream's reading is handled as soon as it arrives.
        """
        consume, size = self._consumer.consume, self.settings.batch_max_size
        batch = consume(size, 0)
        if not batch:
            batch = consume(1, self.settings.batch_max_wait_s)
            if batch and size > 1:
                batch += consume(size - 1, 0)
        return batch

    async def _fail(self, messages: list[Message], exc: Exception) -> None:
        """Hand a failed batch to ``on_failure`` (its bytes are kept, not dropped); the batch is then committed."""
        if self.on_failure is None:
            return
        try:
            await self.on_failure(messages, exc)
        except Exception:
            # The broker is likely unreachable; then the commit that follows fails too, and the
            # batch is read again from the last commit (by this worker's successor in the group).
            log.exception("could not dead-letter the failed batch's %d messages", len(messages))

    async def _commit(self, messages: list[Message]) -> None:
        if self.transaction is not None:
            try:
                await self._call(self.transaction.commit, self._consumer, messages)
            except TransactionAborted:
                await self._call(self._rewind, messages)
            return
        try:
            await self._call(self._consumer.commit, asynchronous=False)
        except KafkaException as exc:
            # e.g. the broker restarting: the batch's partitions are read again from the last
            # commit, by this worker or their next owner (at-least-once; the sinks are idempotent).
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("offset commit failed (%s); the batch may be read again", exc.args[0].str())

    def _rewind(self, messages: list[Message]) -> None:
        """After a transaction that could not be committed: read the batch again (partitions revoked
        meanwhile are skipped: their new owner reads them from the last commit)."""
        for partition in first_offsets(messages):
            try:
                self._consumer.seek(partition)
            except KafkaException as exc:
                log.warning("rewind of %s [%s] failed: %s", partition.topic, partition.partition, exc.args[0].str())

    async def _close(self) -> None:
        try:
            if self.transaction is not None:
                await self._call(self.transaction.close)
            await self._call(self._consumer.close)  # leaves the group: partitions move at once
        finally:
            self._thread.shutdown(wait=False)

    async def _call(self, fn: Callable[..., object], *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kwargs))


def _usable(message: Message) -> bool:
    error = message.error()
    if error is None:
        return True
    log.warning("consumer error on %s [%s]: %s", message.topic(), message.partition(), error.str())
    return False


def _log_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    # What the worker holds now: with cooperative rebalancing (kafka profile) ``partitions`` are only
    # the added ones, and those it kept are still in ``assignment()``.
    held = {p.partition for p in consumer.assignment()} | {p.partition for p in partitions}
    log.info("readings partitions assigned: %s", sorted(held))


def _log_revoke(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
    log.info("readings partitions revoked: %s", sorted(p.partition for p in partitions))
