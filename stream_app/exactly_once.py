"""Exactly-once alerts on Apache Kafka: a batch's alerts, dead letters and offsets in one transaction.

In the ``kafka`` profile (with ``FLOORWATCH_KAFKA_TRANSACTIONS``, on by default) the worker sends its
alerts and dead letters with a transactional confluent-kafka producer instead of Faust's, and instead
of committing the batch's offsets with the consumer it adds them to the transaction
(``send_offsets_to_transaction``) and commits that. A worker killed mid-batch leaves an open
transaction that the broker aborts: read_committed consumers of ``anomaly-alerts`` never see its
records, and the next owner of its partitions starts at the last committed batch. So no alert record
is duplicated on the topic, not only in Redis.

The embedded broker has no transactions: its profile keeps at-least-once with idempotent sinks.

A killed worker's open transaction holds back read_committed readers of the partitions it wrote to
(and its offsets) until the broker aborts it after ``transaction.timeout.ms``; 10 s here instead of
the client's 60 s default keeps that wait short. Batches take milliseconds, far below it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from .kafka_config import producer_config
from .settings import Settings

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 10_000
_CALL_TIMEOUT_S = 30.0


def transactions_enabled(settings: Settings) -> bool:
    return settings.kafka_profile == "kafka" and settings.kafka_transactions


class TransactionAborted(Exception):
    """The batch's transaction was aborted: its messages must be read again."""


class BatchTransaction:
    """The worker's transactional producer; one transaction per batch of readings.

    ``begin``/``commit``/``abort`` run on the readings consumer's thread (consume.py), between its
    ``consume`` calls, so a rebalance never happens inside a transaction; ``send`` may be called from
    the event loop meanwhile (librdkafka's producer is thread-safe).
    """

    def __init__(self, settings: Settings) -> None:
        # Unique per process: since KIP-447 a zombie is fenced by the consumer group's generation
        # (send_offsets_to_transaction carries it), not by reusing a transactional id.
        self.transactional_id = f"{settings.app_id}-{uuid.uuid4().hex[:12]}"
        self._producer = Producer(
            producer_config(
                settings,
                **{"transactional.id": self.transactional_id, "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS},
            )
        )
        self._initialised = False
        self._open = False

    def begin(self) -> None:
        if not self._initialised:
            self._producer.init_transactions(_CALL_TIMEOUT_S)
            self._initialised = True
        self._producer.begin_transaction()
        self._open = True

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key)
                return
            except BufferError:  # the local queue is full: let librdkafka drain it
                self._producer.poll(0.05)

    def commit(self, consumer: Consumer, messages: Iterable[Message]) -> None:
        """Add the batch's next offsets to the transaction and commit it; on failure abort and raise
        ``TransactionAborted`` (the caller rewinds), or re-raise a fatal error (e.g. fenced)."""
        offsets = next_offsets(messages)
        try:
            self._producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), _CALL_TIMEOUT_S)
            self._producer.commit_transaction(_CALL_TIMEOUT_S)
            self._open = False
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal():
                raise
            log.warning("transaction failed (%s); aborting, the batch is read again", error.str())
            self.abort()
            raise TransactionAborted(error.str()) from exc

    def abort(self) -> None:
        if self._open:
            self._open = False
            try:
                self._producer.abort_transaction(_CALL_TIMEOUT_S)
            except KafkaException as exc:
                if exc.args[0].fatal():
                    raise
                log.warning("abort failed (%s)", exc.args[0].str())

    def close(self) -> None:
        self.abort()
        self._producer.flush(5)


def next_offsets(messages: Iterable[Message]) -> list[TopicPartition]:
    """Per partition, the offset after the batch's last message: what a commit records."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        last[key] = max(last.get(key, -1), m.offset())
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()]


def first_offsets(messages: Iterable[Message]) -> list[TopicPartition]:
    """Per partition, the batch's first offset: where to rewind after an aborted transaction."""
    first: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        first[key] = min(first.get(key, m.offset()), m.offset())
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in first.items()]
