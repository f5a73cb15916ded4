"""Load for the broker-restart and overload drills: a fleet published at a readings/s rate, and a sampler.

Unlike ``drills.BackgroundRun`` (which raises on the first failed delivery at its final flush), the
load counts every delivery report, so a drill can say how many readings the broker acknowledged,
refused or never took.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from producers.publish import PublishError, ReadingPublisher, reading_json
from producers.scenarios import FEATURES, Scenario
from producers.simulator import FleetSimulator
from stream_app.config.settings import Settings

if TYPE_CHECKING:
    from stream_app.lab.harness import WorkerProcess


class CountingPublisher(ReadingPublisher):
    """Our producer (same config, same reconnect behaviour), counting delivery reports."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.acked = 0
        self.failed = 0
        self.first_error: str | None = None

    def _done(self, err: object, msg: object) -> None:
        super()._done(err, msg)
        if err is None:
            self.acked += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or str(err)


class FleetLoad:
    """Publishes a simulated fleet's ticks, in order, phase after phase, at a chosen rate."""

    def __init__(self, settings: Settings, scenario: Scenario, *, start_ms: int | None = None) -> None:
        # Timestamps end about now, so none is in the future for the worker.
        start = start_ms if start_ms is not None else int(time.time() * 1000) - int(scenario.duration_s * 1000)
        self.sim = FleetSimulator(scenario, start)
        self.publisher = CountingPublisher(settings)
        self._ticks = self.sim.ticks()
        self.sent = 0
        self.last_ts_ms: dict[str, int] = {}
        self.flush_error: str | None = None

    def publish(self, rate: float, *, seconds: float | None = None, ticks: int | None = None) -> float:
        """Publish at ``rate`` readings/s (0: as fast as possible) for ``seconds`` or ``ticks``; return the time taken."""
        started, n, done = time.monotonic(), 0, 0
        for ts, values in self._ticks:
            for device_id, row in zip(self.sim.device_ids, values.tolist()):
                self.publisher.send(device_id, reading_json(device_id, ts, dict(zip(FEATURES, row))))
            n += len(values)
            self.sent += len(values)
            done += 1
            self.last_ts_ms = dict.fromkeys(self.sim.device_ids, ts)
            self.publisher.poll()
            elapsed = time.monotonic() - started
            if (ticks is not None and done >= ticks) or (seconds is not None and elapsed >= seconds):
                break
            if rate > 0 and (delay := started + n / rate - time.monotonic()) > 0:
                time.sleep(delay)
        return time.monotonic() - started

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every delivery report; a refusal is recorded, not raised (the drill reports it)."""
        try:
            self.publisher.flush(timeout_s)
        except PublishError as exc:
            self.flush_error = str(exc)


class Background(threading.Thread):
    """Runs one ``FleetLoad.publish`` call, then its flush, in a thread."""

    def __init__(self, load: FleetLoad, rate: float, **limits: float | int) -> None:
        super().__init__(daemon=True)
        self.load, self.rate, self.limits = load, rate, limits
        self.seconds = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.seconds = self.load.publish(self.rate, **self.limits)  # type: ignore[arg-type]
            self.load.flush()
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self, timeout_s: float = 300) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "publishing did not finish"
        if self.error is not None:
            raise self.error


@dataclass
class Sample:
    t: float  # seconds since the sampler started
    rss_mb: float
    consumed: float  # the worker's floorwatch_readings_total
    sent: int  # readings handed to the producer


class Sampler(threading.Thread):
    """Samples a worker's RSS and consumed count, and the load's sent count, every ``period_s``."""

    def __init__(self, worker: WorkerProcess, load: FleetLoad, period_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.worker, self.load, self.period_s = worker, load, period_s
        self.samples: list[Sample] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self._stop_event.is_set():
            try:
                self.samples.append(
                    Sample(time.monotonic() - started, self.worker.rss_mb(), self.worker.counter("readings"), self.load.sent)
                )
            except OSError:
                pass  # a metrics scrape that timed out under load: skip this second
            self._stop_event.wait(self.period_s)

    def stop(self) -> list[Sample]:
        self._stop_event.set()
        self.join(10)
        return self.samples
