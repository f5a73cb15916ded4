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
(and its offsets) until the broker aborts it after ``transaction.timeout.ms``: 30 s here instead of
the client's 60 s, below the consumer group's 45 s session timeout, so by the time the group hands a
dead worker's partitions over its transaction is gone. Not lower: librdkafka caps a transactional
message's delivery timeout at it, and a crashed leader is replaced only after the controller's 9 s
broker session timeout (measured: 10 s failed transactions on a kill -9 of a leader).

Errors follow librdkafka's transactional contract: retriable ones (e.g. CONCURRENT_TRANSACTIONS
while a coordinator moves) retry the same call; abortable ones (e.g. a record the alerts topic
refuses) abort, and the same records go out in a new transaction, with backoff, for as long as it
takes (consume.py, retry.py): the detector has taken the batch in, so reading it again would lose its
alerts. A fatal one (the producer broken, or its transaction timed out and was aborted by the broker)
replaces the producer first; its id is this process's own, so no other worker can have taken it.
Only when the group has moved the batch's partitions to another member (its generation fenced, or
the partitions revoked) is the batch dropped: its new owner reads it from the last commit.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from stream_app.config.kafka_config import producer_config
from stream_app.config.settings import KafkaSettings
from stream_app.worker.messages import offset_of, partition_of
from stream_app.worker.retry import backoff_s

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 30_000
_CALL_TIMEOUT_S = 30.0
_RETRY_FOR_S = 60.0


def transactions_enabled(settings: KafkaSettings) -> bool:
    return settings.kafka_profile == "kafka" and settings.kafka_transactions


class TransactionFenced(Exception):
    """Another member of the group owns the batch's partitions now: its transaction was aborted, and
    its messages are the new owner's to read again from the last commit."""


# The group moved on without this member (KIP-447: a zombie's transaction is fenced by its group
# generation). librdkafka reports these as abortable, not fatal: retrying would never succeed.
_FENCED_BY_GROUP = frozenset(
    {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID}
)


class BatchTransaction:
    """The worker's transactional producer; one transaction per batch of readings.

    ``begin``/``commit``/``abort`` run on the readings consumer's thread (consume.py), between its
    ``consume`` calls, so a rebalance never happens inside a transaction; ``send`` may be called from
    the event loop meanwhile (librdkafka's producer is thread-safe).
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.transactional_id = ""
        self._producer = self._new_producer()
        self._initialised = False
        self._open = False
        self._records: list[tuple[str, bytes | None, bytes]] = []  # the open transaction's, for a retry
        self._failed: KafkaException | None = None  # a send the open transaction refused (raised by commit)

    def _new_producer(self) -> Producer:
        # A new id for each producer: since KIP-447 a zombie is fenced by the consumer group's
        # generation (send_offsets_to_transaction carries it), not by reusing a transactional id. And a
        # transaction the coordinator cannot finish (it gives up on a marker the partition refuses, e.g.
        # under a max.message.bytes smaller than a marker) wedges its id for good: a replacement
        # producer with the same id would wait on it for ever (measured: CONCURRENT_TRANSACTIONS).
        self.transactional_id = f"{self.settings.app_id}-{uuid.uuid4().hex[:12]}"
        return Producer(
            producer_config(
                self.settings,
                **{"transactional.id": self.transactional_id, "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS},
            )
        )

    def begin(self) -> None:
        try:
            self._begin()
        except KafkaException as exc:
            if not exc.args[0].fatal():
                raise
            log.warning("transactional producer failed (%s); replacing it", exc.args[0].str())
            self._producer, self._initialised = self._new_producer(), False
            self._begin()

    def _begin(self) -> None:
        if not self._initialised:
            _retrying(lambda: self._producer.init_transactions(_CALL_TIMEOUT_S))
            self._initialised = True
        self._producer.begin_transaction()
        self._open = True
        self._records, self._failed = [], None

    @property
    def pending(self) -> int:
        """Records of the open (or last failed) transaction."""
        return len(self._records)

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Add a record to the open transaction. Never raises: a record librdkafka refuses (e.g. the
        transaction already failed on an earlier record) fails the commit, which sends them all again."""
        self._records.append((topic, key, value))
        if self._failed is not None:
            return
        try:
            self._produce(topic, key, value)
        except KafkaException as exc:
            self._failed = exc

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key)
                return
            except BufferError:  # the local queue is full: let librdkafka drain it
                self._producer.poll(0.05)

    def commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None:
        """One attempt: add the batch's next offsets (per partition: past its last handled message)
        to the transaction and commit it.

        A failed attempt aborts the transaction and raises the ``KafkaException``; calling ``commit``
        again then sends the same records in a new transaction first (the detector has already taken
        the batch in: a re-read would find its readings duplicates and send nothing), so the caller
        retries until it goes through (consume.py, with backoff). ``TransactionFenced`` instead when
        another member owns the batch's partitions now: its records must not be sent, the batch is
        the new owner's to read from the last commit.
        """
        if not self._open:  # the last attempt failed (or it was aborted): the same records, anew
            self._begin_again()
        try:
            owned = {(p.topic, p.partition) for p in consumer.assignment()}
            if not all((p.topic, p.partition) in owned for p in offsets):
                raise TransactionFenced("the batch's partitions were revoked")
            if self._failed is not None:
                raise self._failed
            metadata = consumer.consumer_group_metadata()
            _retrying(lambda: self._producer.send_offsets_to_transaction(offsets, metadata, _CALL_TIMEOUT_S))
            _retrying(lambda: self._producer.commit_transaction(_CALL_TIMEOUT_S))
            self._open = False
        except KafkaException as exc:
            self.abort()  # now, not before the next attempt: read_committed readers wait on an open transaction
            if exc.args[0].code() in _FENCED_BY_GROUP:
                raise TransactionFenced(exc.args[0].str()) from exc
            raise
        except TransactionFenced:
            self.abort()
            raise

    def _begin_again(self) -> None:
        records = self._records
        self.begin()  # if it raises, the records stay for the next attempt
        for record in records:
            self.send(*record)

    def abort(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            _retrying(lambda: self._producer.abort_transaction(_CALL_TIMEOUT_S))
        except KafkaException as exc:
            # Fatal (fenced, or a broken transaction state), or stuck: a new producer (a new id);
            # the broker aborts what the old one left open after its transaction timeout.
            log.warning("abort failed (%s); replacing the transactional producer", exc.args[0].str())
            self._producer = self._new_producer()
            self._initialised = False

    def close(self) -> None:
        self.abort()
        try:
            self._producer.flush(5)
        except KafkaException:
            pass  # a broken producer has nothing left to send


def _retrying(call: Callable[[], object]) -> None:
    """``call`` again while it fails with a retriable error (and the transaction needs no abort)."""
    deadline = time.monotonic() + _RETRY_FOR_S
    attempt = 0
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            error = exc.args[0]
            if not error.retriable() or error.txn_requires_abort() or time.monotonic() > deadline:
                raise
            attempt += 1
            time.sleep(backoff_s(attempt))


def first_offsets(messages: Iterable[Message]) -> list[TopicPartition]:
    """Per partition, the batch's first offset: where to rewind after an aborted transaction."""
    first: dict[tuple[str, int], int] = {}
    for m in messages:
        key, offset = partition_of(m), offset_of(m)
        first[key] = min(first.get(key, offset), offset)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in first.items()]
