"""How the readings consumer cuts batches (the consumer itself runs against the real broker in the
integration and fault tests; here a stub stands in for librdkafka's local queue)."""

from stream_app.consume import ReadingsConsumer
from stream_app.settings import Settings


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
    consumer = ReadingsConsumer(Settings(batch_max_size=size, batch_max_wait_s=0.05), handle=None)  # type: ignore[arg-type]
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
