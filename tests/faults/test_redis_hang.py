"""Redis hung (SIGSTOP: connections accepted, nothing answered) under a backlog: scoring goes on at
about its healthy rate, alerts are buffered, and Redis catches up once it runs again.

Figures, not asserted timings: the scoring rate with Redis healthy and hung over a 50k-reading
backlog each. The assertions are about loss: every reading consumed while Redis was still stopped,
nothing left buffered after, every episode in Redis.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from producers.scenarios import Failure, FailureKind, Scenario

from stream_app.lab.harness import WorkerProcess
from .drills import tally
from .load import Background, FleetLoad

pytestmark = pytest.mark.integration

DEVICES = 100
PHASE_TICKS = 500  # 50k readings a phase
HANG_S = 20.0


def _drain_rate(worker: WorkerProcess, load: FleetLoad, base: float, deadline_s: float) -> tuple[float, float]:
    """Publish one phase as fast as possible; the worker's rate between 10% and 90% of it consumed, and the
    readings it had consumed when the deadline passed or all were."""
    total = PHASE_TICKS * DEVICES
    burst = Background(load, 0, ticks=PHASE_TICKS)
    burst.start()
    marks: dict[float, tuple[float, float]] = {}
    deadline = time.monotonic() + deadline_s
    while (done := worker.counter("readings") - base) < total and time.monotonic() < deadline:
        for mark in (0.1, 0.9):
            if mark not in marks and done >= mark * total:
                marks[mark] = (time.monotonic(), done)
        time.sleep(0.05)
    burst.finish()
    if len(marks) < 2:
        return 0.0, done
    (t1, c1), (t2, c2) = marks[0.1], marks[0.9]
    return (c2 - c1) / (t2 - t1), done


def test_redis_hung_does_not_hold_up_scoring(drill_factory, fault_services, record) -> None:
    drill = drill_factory("redis-hang")
    worker = drill.start_worker()
    drill.wait_consuming([worker])
    scenario = Scenario(
        devices=DEVICES,
        device_prefix="rh",
        duration_s=2 * PHASE_TICKS,
        seed=17,
        # One episode while Redis is healthy, one while it hangs (ticks 500-999).
        failures=[
            Failure(device=3, kind=FailureKind.power_surge, start_s=200, duration_s=80, magnitude=0.01),
            Failure(device=8, kind=FailureKind.power_surge, start_s=700, duration_s=80, magnitude=0.01),
        ],
    )
    load = FleetLoad(drill.settings, scenario)

    healthy, _ = _drain_rate(worker, load, worker.counter("readings"), deadline_s=300)
    time.sleep(2.0)
    state = fault_services.state()
    assert state is not None
    base = worker.counter("readings")
    os.kill(state.redis.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        hung, consumed = _drain_rate(worker, load, base, deadline_s=120)
        time.sleep(max(0.0, HANG_S - (time.monotonic() - stopped_at)))
        pending = worker.metrics().get("floorwatch_redis_pending_alerts", 0.0)
        available = worker.metrics().get("floorwatch_redis_available", 1.0)
    finally:
        os.kill(state.redis.pid, signal.SIGCONT)
    hung_for = time.monotonic() - stopped_at
    deadline = time.monotonic() + 30
    while worker.metrics().get("floorwatch_redis_pending_alerts", 0.0) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2.0)
    t = tally(drill.settings, load.sim, "rh")
    record(
        "Redis hung (SIGSTOP) under a backlog",
        load=f"{DEVICES} devices, {PHASE_TICKS * DEVICES} readings published at once per phase, 1 worker",
        faults=f"redis-server SIGSTOP for {hung_for:.0f} s, then SIGCONT",
        healthy_rate=round(healthy),
        hung_rate=round(hung),
        hung_vs_healthy=round(hung / healthy, 2) if healthy else None,
        buffered_while_hung=pending,
        **t.figures(),
    )
    assert consumed >= PHASE_TICKS * DEVICES, f"only {consumed:.0f} readings scored while Redis hung:\n{worker.tail()}"
    assert available == 0.0  # the breaker had opened
    assert worker.metrics().get("floorwatch_redis_pending_alerts", 0.0) == 0
    assert t.delivered == t.expected and t.missing_in_redis == 0 and t.redis_duplicates == 0
