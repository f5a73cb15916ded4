"""The offsets a batch's transaction commits, where a fenced batch is read again from, and how a
failed transaction is sent again with the same records (librdkafka's producer and consumer stubbed:
the same path runs on Apache Kafka in tests/faults/test_alert_sink_outage.py)."""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from stream_app.config.settings import Settings
from stream_app.worker.consume import ReadingsConsumer, _next_offsets
from stream_app.worker.exactly_once import BatchTransaction, first_offsets, transactions_enabled
from stream_app.worker.metrics import Metrics


def _batch() -> list[Message]:
    return [Message(topic="r", partition=p, offset=o) for p, o in [(0, 7), (1, 3), (0, 8), (1, 4), (0, 9), (2, 0)]]


def test_next_offsets_are_one_past_each_partition_s_last_message() -> None:
    assert {(t.partition, t.offset) for t in _next_offsets(_batch(), {})} == {(0, 10), (1, 5), (2, 1)}


def test_an_aborted_batch_rewinds_to_each_partition_s_first_message() -> None:
    assert {(t.partition, t.offset) for t in first_offsets(_batch())} == {(0, 7), (1, 3), (2, 0)}


def test_transactions_only_on_apache_kafka() -> None:
    assert transactions_enabled(Settings(kafka_profile="kafka"))
    assert not transactions_enabled(Settings(kafka_profile="kafka", kafka_transactions=False))
    assert not transactions_enabled(Settings(kafka_profile="embedded"))


class ProducerStub:
    """librdkafka's transactional producer calls, each transaction's records, and failures to raise."""

    def __init__(self, commit_errors: list[KafkaError] | None = None, produce_errors: int = 0) -> None:
        self.commit_errors = list(commit_errors or [])
        self.produce_errors = produce_errors
        self.inits = 0
        self.open: list[tuple[str, bytes | None, bytes]] | None = None
        self.committed: list[list[tuple[str, bytes | None, bytes]]] = []
        self.aborted: list[list[tuple[str, bytes | None, bytes]]] = []
        self.offsets: list[list[tuple[int, int]]] = []
        self.broken = False  # after a fatal error: every call fails

    def _check(self) -> None:
        if self.broken:
            raise KafkaException(KafkaError(KafkaError._FATAL, "broken", fatal=True))

    def init_transactions(self, timeout: float) -> None:
        self._check()
        self.inits += 1

    def begin_transaction(self) -> None:
        self._check()
        self.open = []

    def produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        assert self.open is not None
        if self.produce_errors:
            self.produce_errors -= 1
            raise KafkaException(KafkaError(KafkaError._STATE, "transaction in abortable state"))
        self.open.append((topic, key, value))

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: object, timeout: float) -> None:
        self._check()
        self.offsets.append(sorted((tp.partition, tp.offset) for tp in offsets))

    def commit_transaction(self, timeout: float) -> None:
        self._check()
        assert self.open is not None
        if self.commit_errors:
            error = self.commit_errors.pop(0)
            self.broken = error.fatal()
            raise KafkaException(error)
        self.committed.append(self.open)
        self.open = None

    def abort_transaction(self, timeout: float) -> None:
        self._check()
        assert self.open is not None
        self.aborted.append(self.open)
        self.open = None

    def flush(self, timeout: float) -> int:
        return 0


class StubbedTransaction(BatchTransaction):
    """A BatchTransaction on producer stubs, in the order it asks for them (a fatal error asks again)."""

    def __init__(self, *producers: ProducerStub) -> None:
        self.producers = list(producers)
        self.made: list[ProducerStub] = []
        super().__init__(Settings(kafka_profile="kafka").kafka)

    def _new_producer(self) -> Producer:
        self.made.append(self.producers.pop(0))
        return self.made[-1]  # type: ignore[return-value]


class GroupStub:
    """The readings consumer's calls on a transaction's path: its assignment, its group metadata, seeks."""

    def __init__(self, partitions: list[int]) -> None:
        self.partitions = partitions
        self.seeks: list[tuple[int, int]] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("r", p) for p in self.partitions]

    def consumer_group_metadata(self) -> object:
        return object()

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))


def _commit_batch(transaction: StubbedTransaction, group: GroupStub, records: int = 2) -> Metrics:
    """One batch through the consumer's transactional path: begin, its records sent, committed."""
    settings = Settings(kafka_profile="kafka")
    metrics = Metrics()
    consumer = ReadingsConsumer(settings.kafka, settings.batch, handle=None, metrics=metrics, transaction=transaction)  # type: ignore[arg-type]
    consumer._consumer = group  # type: ignore[assignment]
    batch = _batch()

    async def run() -> None:
        await consumer._call(transaction.begin)
        for i in range(records):
            transaction.send("alerts", f"pump-{i}".encode(), f"alert {i}".encode())
        await consumer._commit(batch, {})

    try:
        asyncio.run(run())
    finally:
        consumer._thread.shutdown(wait=True)
    return metrics


def _records(n: int) -> list[tuple[str, bytes | None, bytes]]:
    return [("alerts", f"pump-{i}".encode(), f"alert {i}".encode()) for i in range(n)]


def test_a_refused_transaction_is_sent_again_with_the_same_records_until_it_commits() -> None:
    # The alerts topic refusing records (MESSAGE_TOO_LARGE) longer than the old 3 tries: the batch's
    # records go out again, not the batch re-read (its readings would be refused as already seen).
    refused = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large", txn_requires_abort=True)
    producer = ProducerStub(commit_errors=[refused] * 4)
    transaction, group = StubbedTransaction(producer), GroupStub([0, 1, 2])

    metrics = _commit_batch(transaction, group)

    assert producer.aborted == [_records(2)] * 4 and producer.committed == [_records(2)]
    assert producer.offsets[-1] == [(0, 10), (1, 5), (2, 1)]  # past the batch, in the committed transaction
    assert group.seeks == []
    assert metrics.totals()["floorwatch_sink_retries_total"] == 4
    assert metrics.registry.get_sample_value("floorwatch_sink_retrying") == 0


def test_a_record_refused_on_send_fails_the_commit_and_goes_out_again_with_the_others() -> None:
    producer = ProducerStub(produce_errors=1)
    transaction, group = StubbedTransaction(producer), GroupStub([0, 1, 2])

    metrics = _commit_batch(transaction, group)

    assert producer.aborted == [[]] and producer.committed == [_records(2)]  # nothing sent after the refusal
    assert metrics.totals()["floorwatch_sink_retries_total"] == 1


def test_a_transaction_fenced_by_the_group_is_dropped_and_its_batch_left_to_the_new_owner() -> None:
    # KIP-447: another member took the partitions over; sending the records again would never commit.
    fenced = KafkaError(KafkaError.ILLEGAL_GENERATION, "Broker: Specified group generation id is not valid", txn_requires_abort=True)
    producer = ProducerStub(commit_errors=[fenced])
    transaction, group = StubbedTransaction(producer), GroupStub([0, 1, 2])

    metrics = _commit_batch(transaction, group)

    assert producer.aborted == [_records(2)] and producer.committed == []
    assert sorted(group.seeks) == [(0, 7), (1, 3), (2, 0)]  # read again from the batch's start (if still held)
    assert metrics.totals().get("floorwatch_sink_retries_total", 0) == 0


def test_a_batch_whose_partitions_were_revoked_is_not_committed() -> None:
    producer = ProducerStub()
    transaction, group = StubbedTransaction(producer), GroupStub([0, 1])  # partition 2 moved away

    _commit_batch(transaction, group)

    assert producer.aborted == [_records(2)] and producer.committed == [] and producer.offsets == []


def test_a_fatal_error_replaces_the_producer_and_the_same_records_commit_with_the_new_one() -> None:
    # e.g. the broker aborted a transaction that ran past its timeout: the producer's epoch is bumped.
    # Its transactional id is this process's own, so no other worker can be its owner: retry.
    fatal = KafkaError(KafkaError._FENCED, "Producer fenced", fatal=True)
    first, second = ProducerStub(commit_errors=[fatal]), ProducerStub()
    transaction, group = StubbedTransaction(first, second), GroupStub([0, 1, 2])

    _commit_batch(transaction, group)

    assert first.committed == [] and second.inits == 1 and second.committed == [_records(2)]
