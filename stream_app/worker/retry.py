"""Sending a batch's records again until they are taken: the backoff, the log lines, the metrics.

Both delivery paths use it: at-least-once, the batch handler re-sends to the sink that failed
(handler.py); exactly-once, the readings consumer commits the batch's transaction again with the same
records (consume.py). Either way the detector has already taken the batch's readings in, so the only
way not to lose its alerts is to send the same records again, for as long as it takes, committing
nothing past the batch meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType

from stream_app.worker.metrics import Metrics

log = logging.getLogger(__name__)

# While the records keep being refused, one log line this often (the first failure is logged at once).
LOG_EVERY_S = 30.0
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0


def backoff_s(attempt: int, first_s: float = RETRY_FIRST_S, max_s: float = RETRY_MAX_S) -> float:
    """The pause after failed attempt ``attempt`` (1, 2, ...): ``first_s`` doubling up to ``max_s``."""
    return min(max_s, first_s * 2 ** (attempt - 1))


class BatchRetries:
    """The failed attempts at sending one batch's records; ``async with`` it around the attempts.

    ``failed`` after each failed attempt: the first is logged at once, then one line every
    ``LOG_EVERY_S``; each is counted (``floorwatch_sink_retries_total``), ``floorwatch_sink_retrying``
    is 1 until the block ends (however it ends: cancelled at shutdown too), then it sleeps the backoff.
    """

    def __init__(
        self,
        metrics: Metrics | None,
        what: str,
        *,
        first_s: float = RETRY_FIRST_S,
        max_s: float = RETRY_MAX_S,
    ) -> None:
        self.metrics = metrics
        self.what = what  # e.g. "the batch's 2 alert(s) and 0 dead letter(s)"
        self.first_s, self.max_s = first_s, max_s
        self.attempts = 0
        self._first_failure = self._logged = 0.0

    async def __aenter__(self) -> BatchRetries:
        return self

    async def failed(self, where: str, exc: BaseException) -> None:
        """Attempt failed at ``where`` (a sink, the transaction): log, count, and wait before the next."""
        self.attempts += 1
        now = time.monotonic()
        if self.attempts == 1:
            self._first_failure = self._logged = now
            if self.metrics is not None:
                self.metrics.sink_retrying.set(1)
            log.warning(
                "%s failed (%s); sending %s again, nothing committed past it until sent", where, error_line(exc), self.what
            )
        elif now - self._logged >= LOG_EVERY_S:
            self._logged = now
            log.warning(
                "%s still failing after %d attempts in %.0f s (%s); consumption held up",
                where, self.attempts, now - self._first_failure, error_line(exc),
            )  # fmt: skip
        if self.metrics is not None:
            self.metrics.sink_retries.inc()
        await asyncio.sleep(backoff_s(self.attempts, self.first_s, self.max_s))

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.attempts:
            return
        if self.metrics is not None:
            self.metrics.sink_retrying.set(0)
        if kind is None:
            log.warning("the batch's records were sent after %d failed attempt(s)", self.attempts)


def error_line(exc: BaseException) -> str:
    """An exception in one short line, for a log line."""
    return f"{type(exc).__name__}: {str(exc)[:200]}"
