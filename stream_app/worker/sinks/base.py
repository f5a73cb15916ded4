"""What a sink of the worker's batch is: the interfaces the batch handler (handler.py) writes to.

In the manner of quix-streams' ``BaseSink``: the handler ``add``s a batch's records one by one,
then ``flush``es once, before the batch's offsets are committed; a sink may send on ``add`` and
wait on ``flush``, or buffer on ``add`` and write on ``flush``. When the batch fails before its
flush, the handler calls ``abandon``: what was added and not flushed is forgotten (the batch is
handled again, message by message; see consume.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import ClassVar

from stream_app.contracts import Alert
from stream_app.pipeline.decode import Rejection
from stream_app.pipeline.detector import DeviceStatus
from stream_app.worker.context import MessageContext

# Device statuses of one batch, by the model version that scored those devices.
Statuses = Mapping[str, Iterable[DeviceStatus]]


class AlertSink(ABC):
    """Where alerts go. Alert ids are deterministic: a sink must take the same alert twice safely."""

    # Its stage in ``floorwatch_batch_stage_seconds`` is ``sink_<name>`` (metrics.py).
    name: ClassVar[str] = "alerts"

    @abstractmethod
    async def add(self, alert: Alert) -> None:
        """One alert of the batch."""

    def add_statuses(self, statuses: Statuses) -> None:
        """The batch's device statuses, for a sink that keeps them (Redis); others ignore them."""

    @abstractmethod
    async def flush(self) -> None:
        """The batch is done: return once this sink holds what was added (raise if it cannot)."""

    @abstractmethod
    def abandon(self) -> None:
        """The batch failed: forget what was added since the last flush."""


class DeadLetterSink(ABC):
    """Where unusable messages, or parts of them, go: each with its reason and original bytes."""

    name: ClassVar[str] = "dead_letters"

    @abstractmethod
    async def add(self, rejection: Rejection, source: MessageContext) -> None:
        """One rejection, with the message it came from."""

    @abstractmethod
    async def flush(self) -> None:
        """Return once every letter added is held (acknowledged by the broker); raise if not."""

    @abstractmethod
    def abandon(self) -> None:
        """The batch failed: forget what was added since the last flush."""
