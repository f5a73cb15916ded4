"""Overload: one worker offered twice its sustainable rate for 60 s; memory stays bounded, the lag drains.

The sustainable rate is measured first in the same drill: a burst published as fast as possible,
and the worker's consumed-readings counter timed while a backlog remains. Readings here are one
JSON message each (the worker's costliest form per reading).
"""

from __future__ import annotations

import time

import pytest

from producers.scenarios import Failure, FailureKind, Scenario
from stream_app.lab.bench_stats import rss_mb

from .drills import tally
from .load import Background, FleetLoad, Sampler

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DEVICES = 100
BURST_TICKS = 600  # 60k readings to time the worker with
OVERLOAD_S = 60.0
RSS_BOUND_MB = 2048.0


def test_overload_2x_for_60s(drill_factory, fault_services, record) -> None:
    drill = drill_factory("overload")
    worker = drill.start_worker()
    drill.wait_consuming([worker])
    probes = worker.counter("readings")
    scenario = Scenario(
        devices=DEVICES,
        device_prefix="ov",
        duration_s=100_000,  # more ticks than any run publishes; only the first few thousand are used
        seed=31,
        # Both during the overload (its ticks start after the burst's 600 simulated seconds).
        failures=[
            Failure(device=7, kind=FailureKind.power_surge, start_s=800, duration_s=100, magnitude=0.01),
            Failure(device=42, kind=FailureKind.overheating, start_s=1000, duration_s=100, magnitude=0.01),
        ],
    )
    load = FleetLoad(drill.settings, scenario)

    # 1. Sustainable rate: time the worker while the burst's backlog lasts (10% to 90% consumed).
    burst = Background(load, 0, ticks=BURST_TICKS)
    burst.start()
    total = BURST_TICKS * DEVICES
    marks: dict[float, tuple[float, float]] = {}
    deadline = time.monotonic() + 300
    while (done := worker.counter("readings") - probes) < total:
        assert time.monotonic() < deadline, f"burst not consumed:\n{worker.tail()}"
        for mark in (0.1, 0.9):
            if mark not in marks and done >= mark * total:
                marks[mark] = (time.monotonic(), done)
        time.sleep(0.1)
    burst.finish()
    (t1, c1), (t2, c2) = marks[0.1], marks[0.9]
    sustainable = (c2 - c1) / (t2 - t1)
    burst_publish_rate = total / burst.seconds

    # 2. Twice that, paced, for 60 s; then nothing, until the backlog is gone.
    rss_before = worker.rss_mb()
    sampler = Sampler(worker, load)
    sampler.start()
    sent_before = load.sent
    overload = Background(load, 2 * sustainable, seconds=OVERLOAD_S)
    overload.start()
    overload.finish(OVERLOAD_S + 120)
    stopped = time.monotonic()
    offered = (load.sent - sent_before) / overload.seconds
    backlog_at_stop = load.sent - (worker.counter("readings") - probes)
    drain_timeout = max(180.0, 4 * backlog_at_stop / sustainable)
    while worker.counter("readings") - probes < load.publisher.acked:
        if time.monotonic() - stopped > drain_timeout:
            break
        assert worker.process.poll() is None, f"worker died under load:\n{worker.tail()}"
        time.sleep(0.2)
    drain_s = time.monotonic() - stopped
    time.sleep(2.0)  # the last batch's alerts reach the topic and Redis
    samples = sampler.stop()
    consumed = worker.counter("readings") - probes
    t = tally(drill.settings, load.sim, "ov")
    state = fault_services.state()
    record(
        "overload 2x sustainable for 60 s",
        load=f"{DEVICES} devices, 1 JSON reading per message, 4 partitions, 1 worker; "
        f"{offered:.0f} readings/s offered for {overload.seconds:.0f} s",
        faults=f"2x the measured sustainable rate ({sustainable:.0f} readings/s)",
        burst_publish_rate=round(burst_publish_rate),
        sustainable_rate=round(sustainable),
        offered_rate=round(offered),
        readings_published=load.sent,
        readings_acked=load.publisher.acked,
        readings_consumed=consumed,
        readings_lost=load.publisher.acked - consumed,
        duplicate_readings=worker.counter("duplicate_readings"),
        dead_letters=worker.counter("dead_letters"),
        rss_before_mb=round(rss_before),
        peak_rss_mb=round(max(s.rss_mb for s in samples)),
        peak_lag=round(max(s.sent - (s.consumed - probes) for s in samples)),
        backlog_at_stop=round(backlog_at_stop),
        drain_s=round(drain_s, 1),
        broker_rss_mb=round(rss_mb(state.kafka.pid)) if state else None,
        lag_every_5s=[round(s.sent - (s.consumed - probes)) for s in samples[::5]],
        rss_every_5s=[round(s.rss_mb) for s in samples[::5]],
        **t.figures(),
    )
    assert max(s.rss_mb for s in samples) < RSS_BOUND_MB
    assert offered > 1.5 * sustainable, "the producer could not offer an overload; figures above say by how much"
    assert consumed >= load.publisher.acked, f"backlog not drained in {drain_timeout:.0f}s"
    assert t.delivered == t.expected and t.missing_in_redis == 0 and t.redis_duplicates == 0

