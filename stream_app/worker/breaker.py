"""A circuit breaker for a dependency that may hang rather than fail (Redis stopped with SIGSTOP).

Closed: calls go through. The first failure or timeout opens it: callers skip the dependency at once
(the Redis sink buffers) instead of each waiting out a socket timeout, and one probe is allowed every
``probe_interval_s``; a successful probe closes it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, probe_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.probe_interval_s = probe_interval_s
        self._clock = clock
        self._opened_at: float | None = None
        self._last_probe = -float("inf")
        self.trips = 0  # how many times it opened

    @property
    def closed(self) -> bool:
        return self._opened_at is None

    def probe_due(self) -> bool:
        """Open, and a probe may be made now (at most one per interval)."""
        if self._opened_at is None:
            return False
        now = self._clock()
        if now - self._last_probe < self.probe_interval_s:
            return False
        self._last_probe = now
        return True

    def failure(self) -> bool:
        """Record a failure; True if this opened the breaker (it was closed)."""
        opened = self._opened_at is None
        if opened:
            self._opened_at = self._last_probe = self._clock()
            self.trips += 1
        return opened

    def success(self) -> bool:
        """Record a success; True if this closed the breaker (it was open)."""
        was_open = self._opened_at is not None
        self._opened_at = None
        return was_open
