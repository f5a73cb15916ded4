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
while a coordinator moves) retry the same call; abortable ones abort, and the same records go out
in a new transaction; a fatal one (the producer fenced or broken) replaces the producer first.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from stream_app.config.kafka_config import producer_config
from stream_app.config.settings import KafkaSettings
from stream_app.worker.messages import offset_of, partition_of

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 30_000
_CALL_TIMEOUT_S = 30.0
_RETRY_FOR_S = 60.0


def transactions_enabled(settings: KafkaSettings) -> bool:
    return settings.kafka_profile == "kafka" and settings.kafka_transactions


class TransactionAborted(Exception):
    """The batch's transaction was aborted: its messages must be read again."""


class BatchTransaction:
    """The worker's transactional producer; one transaction per batch of readings.

    ``begin``/``commit``/``abort`` run on the readings consumer's thread (consume.py), between its
    ``consume`` calls, so a rebalance never happens inside a transaction; ``send`` may be called from
    the event loop meanwhile (librdkafka's producer is thread-safe).
    """

    def __init__(self, settings: KafkaSettings) -> None:
        # Unique per process: since KIP-447 a zombie is fenced by the consumer group's generation
        # (send_offsets_to_transaction carries it), not by reusing a transactional id.
        self.settings = settings
        self.transactional_id = f"{settings.app_id}-{uuid.uuid4().hex[:12]}"
        self._producer = self._new_producer()
        self._initialised = False
        self._open = False
        self._records: list[tuple[str, bytes | None, bytes]] = []  # the open transaction's, for a retry

    def _new_producer(self) -> Producer:
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
        self._records = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._records.append((topic, key, value))
        self._produce(topic, key, value)

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key)
                return
            except BufferError:  # the local queue is full: let librdkafka drain it
                self._producer.poll(0.05)

    def commit(self, consumer: Consumer, offsets: list[TopicPartition], attempts: int = 3) -> None:
        """Add the batch's next offsets (per partition: past its last handled message) to the transaction and commit it.

        An aborted transaction is tried again with the same records in a new one, as long as this
        worker still owns the batch's partitions: the detector has already taken the batch in (a
        re-read would find its readings duplicates and send nothing). If the partitions moved, or
        every attempt failed, ``TransactionAborted``: the batch's records are dropped and its
        messages read again from the last commit (by the partitions' owner).
        """
        for attempt in range(1, attempts + 1):
            try:
                metadata = consumer.consumer_group_metadata()
                _retrying(lambda: self._producer.send_offsets_to_transaction(offsets, metadata, _CALL_TIMEOUT_S))
                _retrying(lambda: self._producer.commit_transaction(_CALL_TIMEOUT_S))
                self._open = False
                return
            except KafkaException as exc:
                error = exc.args[0].str()
                records = self._records
                self.abort()
                owned = {(p.topic, p.partition) for p in consumer.assignment()}
                if attempt == attempts or not all((p.topic, p.partition) in owned for p in offsets):
                    log.warning("transaction failed (%s); its batch is read again from the last commit", error)
                    raise TransactionAborted(error) from exc
                log.warning("transaction failed (%s); trying again with the same %d record(s)", error, len(records))
                self.begin()
                for record in records:
                    self.send(*record)

    def abort(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            _retrying(lambda: self._producer.abort_transaction(_CALL_TIMEOUT_S))
        except KafkaException as exc:
            # Fatal (fenced, or a broken transaction state): a new producer with the same id
            # bumps the epoch, and the broker aborts what the old one left open.
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
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            error = exc.args[0]
            if not error.retriable() or error.txn_requires_abort() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def first_offsets(messages: Iterable[Message]) -> list[TopicPartition]:
    """Per partition, the batch's first offset: where to rewind after an aborted transaction."""
    first: dict[tuple[str, int], int] = {}
    for m in messages:
        key, offset = partition_of(m), offset_of(m)
        first[key] = min(first.get(key, offset), offset)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in first.items()]
