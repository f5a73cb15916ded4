"""The offsets a batch's transaction commits, and where an aborted batch is read again from."""

from __future__ import annotations

from confluent_kafka import Message

from stream_app.worker.consume import _next_offsets
from stream_app.worker.exactly_once import first_offsets, transactions_enabled
from stream_app.config.settings import Settings


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
