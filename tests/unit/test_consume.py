"""How the readings consumer cuts batches (the consumer itself runs against the real broker in the
integration and fault tests; here a stub stands in for librdkafka's local queue)."""

import asyncio

import pytest

from stream_app.worker.consume import ReadingsConsumer
from stream_app.config.settings import Settings


class QueueStub:
    """``consume(n, timeout)`` over a list of already fetched messages and ones that arrive later."""

    def __init__(self, fetched: list[str], arriving: list[str]) -> None:
        self.fetched, self.arriving, self.calls = list(fetched), list(arriving), []

    def consume(self, n: int, timeout: float) -> list[str]:
        self.calls.append((n, timeout))
        if not self.fetched and timeout > 0:
            self.fetched, self.arriving = self.arriving, []
        taken, self.fetched = self.fetched[:n], self.fetched[n:]
        return taken


def consumer_over(stub: QueueStub, size: int = 4) -> ReadingsConsumer:
    settings = Settings(batch_max_size=size, batch_max_wait_s=0.05)
    consumer = ReadingsConsumer(settings.kafka, settings.batch, handle=None)  # type: ignore[arg-type]
    consumer._consumer = stub  # type: ignore[assignment]
    return consumer


def test_a_batch_is_what_was_already_fetched_up_to_the_size() -> None:
    stub = QueueStub(["a", "b", "c", "d", "e", "f"], [])
    consumer = consumer_over(stub)
    assert consumer._next_batch() == ["a", "b", "c", "d"]
    assert consumer._next_batch() == ["e", "f"]  # no waiting for the batch to fill
    assert stub.calls == [(4, 0), (4, 0)]


def test_with_nothing_fetched_it_waits_for_the_first_and_takes_what_came_with_it() -> None:
    stub = QueueStub([], ["a", "b", "c", "d", "e"])
    consumer = consumer_over(stub)
    assert consumer._next_batch() == ["a", "b", "c", "d"]
    assert stub.calls == [(4, 0), (1, 0.05), (3, 0)]


def test_a_quiet_stream_gives_an_empty_batch_after_the_wait() -> None:
    stub = QueueStub([], [])
    assert consumer_over(stub)._next_batch() == []
    assert stub.calls == [(4, 0), (1, 0.05)]


class BrokerStub:
    """The consumer calls ``run`` makes, over one batch; then it is cancelled, as at shutdown."""

    def __init__(self, batch: list[str]) -> None:
        self.batches, self.commits, self.closed = [batch], [], False
        self.seeks: list[tuple[int, int]] = []

    def subscribe(self, topics: list[str], **callbacks: object) -> None:
        pass

    def consume(self, n: int, timeout: float) -> list[str]:
        if not self.batches:
            raise asyncio.CancelledError  # what stopping the worker's task does
        return self.batches.pop(0)

    def commit(self, offsets: list, asynchronous: bool) -> None:  # type: ignore[type-arg]
        self.commits.append(sorted((tp.partition, tp.offset) for tp in offsets))

    def seek(self, tp) -> None:  # type: ignore[no-untyped-def]
        self.seeks.append((tp.partition, tp.offset))

    def close(self) -> None:
        self.closed = True


class MessageStub:
    def __init__(self, value: bytes, partition: int = 0, offset: int = 0) -> None:
        self._value, self._partition, self._offset = value, partition, offset

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "sensor-readings"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def run_one_batch(handle, on_failure, batch=None) -> BrokerStub:  # type: ignore[no-untyped-def]
    batch = batch or [MessageStub(b"one", 0, 10), MessageStub(b"two", 0, 11)]
    stub = BrokerStub(batch)  # type: ignore[arg-type]
    consumer = ReadingsConsumer(Settings().kafka, Settings().batch, handle, on_failure=on_failure)
    consumer._consumer = stub  # type: ignore[assignment]
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(consumer.run())
    return stub


def test_a_failing_batch_is_handled_message_by_message_and_only_the_bad_one_is_dead_lettered() -> None:
    handled: list[list[bytes]] = []
    failed: list[tuple[list[bytes], str]] = []

    async def handle(messages: list) -> None:  # type: ignore[type-arg]
        values = [m.value() for m in messages]
        if b"poison" in values:
            raise RuntimeError("a bug")
        handled.append(values)

    async def on_failure(messages: list, exc: Exception) -> None:  # type: ignore[type-arg]
        failed.append(([m.value() for m in messages], str(exc)))

    batch = [MessageStub(b"one", 0, 10), MessageStub(b"poison", 0, 11), MessageStub(b"two", 1, 5), MessageStub(b"three", 0, 12)]
    stub = run_one_batch(handle, on_failure, batch)
    assert handled == [[b"one"], [b"two"], [b"three"]]  # every good message handled
    assert failed == [([b"poison"], "a bug")]  # only the bad one dead-lettered, with the cause
    assert stub.commits == [[(0, 13), (1, 6)]] and stub.seeks == [] and stub.closed


def test_a_message_that_cannot_be_dead_lettered_is_not_committed_past() -> None:
    async def handle(messages: list) -> None:  # type: ignore[type-arg]
        if any(m.value() == b"poison" for m in messages):
            raise RuntimeError("a bug")

    async def on_failure(messages: list, exc: Exception) -> None:  # type: ignore[type-arg]
        raise ConnectionError("broker unreachable")

    batch = [MessageStub(b"one", 0, 10), MessageStub(b"poison", 0, 11), MessageStub(b"two", 1, 5), MessageStub(b"three", 0, 12)]
    stub = run_one_batch(handle, on_failure, batch)
    # Partition 0 committed up to the poison message and read again from it; partition 1's
    # message came after the failed dead letter, so it is read again too.
    assert stub.commits == [[(0, 11), (1, 5)]]
    assert sorted(stub.seeks) == [(0, 11), (1, 5)]


def test_a_handled_batch_is_committed_without_the_failure_handler() -> None:
    handled: list[int] = []

    async def handle(messages: list) -> None:  # type: ignore[type-arg]
        handled.append(len(messages))

    async def on_failure(messages: list, exc: Exception) -> None:  # type: ignore[type-arg]
        raise AssertionError("not called")

    stub = run_one_batch(handle, on_failure)
    assert handled == [2] and stub.commits == [[(0, 12)]]
