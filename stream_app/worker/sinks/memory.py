"""In-memory sinks: a test seam (like httpx's ``MockTransport``) for driving the batch handler
without Kafka or Redis, and a way to see what a batch would have sent."""

from __future__ import annotations

from stream_app.contracts import Alert, DeadLetter
from stream_app.pipeline.decode import Rejection, dead_letter
from stream_app.pipeline.detector import DeviceStatus
from stream_app.worker.context import MessageContext
from stream_app.worker.sinks.base import AlertSink, DeadLetterSink, Statuses


class MemoryAlertSink(AlertSink):
    """Keeps flushed alerts in ``alerts`` and each device's latest status in ``statuses``.

    ``fail``: an exception ``flush`` raises (a sink that cannot take the batch): every time, or
    only the first ``failures`` times (a broker away for a moment).
    """

    def __init__(self, fail: BaseException | None = None, failures: int | None = None) -> None:
        self.fail = fail
        self.failures = failures
        self.flushes = 0  # calls of ``flush``, failed ones included
        self.alerts: list[Alert] = []
        self.statuses: dict[str, tuple[DeviceStatus, str]] = {}
        self._added: list[Alert] = []
        self._added_statuses: list[tuple[DeviceStatus, str]] = []

    async def add(self, alert: Alert) -> None:
        self._added.append(alert)

    def add_statuses(self, statuses: Statuses) -> None:
        self._added_statuses += [(status, version) for version, group in statuses.items() for status in group]

    async def flush(self) -> None:
        self.flushes += 1
        if self.fail is not None and (self.failures is None or self.flushes <= self.failures):
            raise self.fail
        self.alerts += self._added
        self.statuses.update((status.device_id, (status, version)) for status, version in self._added_statuses)
        self.abandon()

    def abandon(self) -> None:
        self._added, self._added_statuses = [], []


class MemoryDeadLetterSink(DeadLetterSink):
    """Keeps flushed dead letters in ``letters``, as the dead-letter topic would hold them."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.letters: list[DeadLetter] = []
        self._added: list[DeadLetter] = []

    async def add(self, rejection: Rejection, source: MessageContext) -> None:
        self._added.append(
            dead_letter(rejection, topic=source.topic, partition=source.partition, offset=source.offset, key=source.key)
        )

    async def flush(self) -> None:
        if self.fail is not None:
            raise self.fail
        self.letters += self._added
        self._added = []

    def abandon(self) -> None:
        self._added = []
