"""The benchmark's end-to-end parts: a real worker (one process, or ``--processes N``) on the embedded services.

Throughput: a backlog of readings is produced first, then a worker drains it; readings/s is
counted from the worker's own Prometheus counter (the embedded broker's watermarks are wrong
for batched writes, so nothing here relies on them). Latency: readings are produced at a fixed
rate, with failures injected on some devices; each alert's Redis stream entry id (Redis arrival
time in ms) minus the produce time of the reading that closed the alert's window.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import redis

from stream_app.errors import FloorwatchError
from producers.publish import ReadingPublisher
from producers.scenarios import FEATURES, Failure, FailureKind, Scenario
from producers.simulator import FleetSimulator

from stream_app.lab.bench_stats import Latency, drain_rate, processes_rates, stage_times, summarize
from stream_app.contracts import iso_ms, to_epoch_ms
from stream_app.lab.harness import WorkerProcess
from stream_app.config.settings import Settings
from stream_app.worker.sinks import RedisKeys
from stream_app.worker.topics import ensure_topics


class BenchError(FloorwatchError):
    """A benchmark phase could not run (a service or the worker failed)."""


def phase_settings(settings: Settings, name: str) -> Settings:
    """Own readings topic, consumer group and Redis prefix per phase, so phases never mix."""
    s = settings.model_copy(
        update={
            "readings_topic": f"bench-{name}-readings",
            "app_id": f"floorwatch-bench-{name}-{int(time.time())}",
            "redis_prefix": f"bench-{name}",
        }
    )
    ensure_topics(s)
    return s


def _reading(device: str, ts: int, row: list[float]) -> bytes:
    return orjson.dumps({"device_id": device, "ts": iso_ms(ts), "values": dict(zip(FEATURES, row))})


def produce_backlog(settings: Settings, devices: int, per_device: int, batch: int, seed: int = 3) -> tuple[int, int]:
    """Produce ``devices x per_device`` normal readings (ending now), single or batched form."""
    scenario = Scenario(devices=devices, duration_s=per_device, seed=seed)
    sim = FleetSimulator(scenario, int(time.time() * 1000) - per_device * 1000 - 5_000)
    publisher = ReadingPublisher(settings)
    messages = 0
    pending: dict[str, list[dict[str, object]]] = {d: [] for d in sim.device_ids}
    for ts, values in sim.ticks():
        for device, row in zip(sim.device_ids, values.tolist()):
            if batch <= 1:
                publisher.send(device, _reading(device, ts, row))
                messages += 1
                continue
            pending[device].append({"ts": ts, "values": dict(zip(FEATURES, row))})
            if len(pending[device]) >= batch:
                publisher.send(device, orjson.dumps({"device_id": device, "readings": pending[device]}))
                pending[device], messages = [], messages + 1
        publisher.poll()
    for device, left in pending.items():
        if left:
            publisher.send(device, orjson.dumps({"device_id": device, "readings": left}))
            messages += 1
    publisher.flush(120)
    return devices * per_device, messages


def drain(
    worker: WorkerProcess, total: int, timeout_s: float, *, on_progress: Callable[[int, int], None] | None = None
) -> tuple[float, float, dict[str, float]]:
    """Sample the worker's readings counter until it reaches ``total``: (seconds, readings/s, metrics).

    ``on_progress(consumed, total)`` follows each sample (a progress bar; it costs no extra scrape).
    """
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout_s
    metrics: dict[str, float] = {}
    while time.monotonic() < deadline:
        metrics = _scrape(worker)
        count = metrics.get("floorwatch_readings_total", 0.0)
        samples.append((time.monotonic(), count))
        if on_progress is not None:
            on_progress(min(int(count), total), total)
        if count >= total:
            break
        worker.check()
        time.sleep(0.2)  # each scrape costs the worker CPU; 0.2 s is resolution enough for 10 s+ runs
    else:
        raise BenchError(f"the worker consumed {samples[-1][1]:.0f} of {total} readings in {timeout_s:.0f}s")
    time.sleep(0.3)  # the last batch's scoring and Redis writes
    seconds, rate = drain_rate(samples, total)
    return seconds, rate, _scrape(worker)


def drain_processes(
    worker: WorkerProcess, total: int, timeout_s: float, *, on_progress: Callable[[int, int], None] | None = None
) -> tuple[float, float, float | None, list[int], int | None]:
    """``drain`` for a worker of several processes, each process's counter sampled on its own endpoint:
    (seconds, readings/s, readings/s once all were consuming, readings per process, stalls seen)."""
    counts = [0.0] * len(worker.ports)
    samples: list[tuple[float, list[float]]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for i in range(len(counts)):
            try:  # a process too busy to answer keeps its last count: the sum never goes backwards
                counts[i] = worker.process_metrics(i).get("floorwatch_readings_total", counts[i])
            except OSError:
                pass
        samples.append((time.monotonic(), list(counts)))
        if on_progress is not None:
            on_progress(min(int(sum(counts)), total), total)
        if sum(counts) >= total:
            break
        worker.check()
        time.sleep(0.2)
    else:
        raise BenchError(f"the worker's {len(counts)} processes consumed {sum(counts):.0f} of {total} readings in {timeout_s:.0f}s")
    seconds, rate, settled_rate = processes_rates(samples, total)
    try:
        stalls: int | None = int(worker.metrics().get("floorwatch_consumer_stalls_total", 0.0))
    except OSError:
        stalls = None
    return seconds, rate, settled_rate, [int(c) for c in counts], stalls


def _scrape(worker: WorkerProcess) -> dict[str, float]:
    """The worker's metrics; none while a scrape fails (a busy worker), if the process is still alive."""
    try:
        return worker.metrics()
    except OSError:
        worker.check()
        return {}


def _pages(worker: WorkerProcess) -> list[str]:
    """Each worker process's metrics page; none for a process that does not answer now."""
    pages = []
    for i in range(len(worker.ports)):
        try:
            pages.append(worker.metrics_page(i))
        except OSError:
            pass
    return pages


def measure_latency(
    settings: Settings, worker: WorkerProcess, *, rate: float, devices: int, seconds: float, failing: int, seed: int = 5
) -> Latency:
    """Produce at ``rate`` readings/s in total for ``seconds``; alerts' latency from Redis."""
    per_device_hz = rate / devices
    step = max(1, devices // max(1, failing))
    span = max(1.0, seconds - 10.0)  # failures start early enough to open and close within the run
    failures = [
        Failure(device=d, kind=FailureKind.power_surge, start_s=3.0 + span * i / max(1, failing), duration_s=2.0)
        for i, d in enumerate(range(0, devices, step)[:failing])
    ]
    scenario = Scenario(devices=devices, rate_hz=per_device_hz, duration_s=seconds, seed=seed, failures=failures)
    started_ms = int(time.time() * 1000) + 500
    sim = FleetSimulator(scenario, started_ms)
    failing_ids = {sim.device_ids[f.device] for f in failures}
    publisher = ReadingPublisher(settings)
    produced_at: dict[tuple[str, int], float] = {}
    before = _scrape(worker).get("floorwatch_readings_total", 0.0)
    pages = _pages(worker)  # the batch stages' histograms, to count this run's batches only
    sent, t0 = 0, None
    for ts, values in sim.ticks():
        delay = ts / 1000.0 - time.time()
        if delay > 0:
            time.sleep(delay)
        t0 = t0 or time.perf_counter()
        for device, row in zip(sim.device_ids, values.tolist()):
            payload = _reading(device, ts, row)
            if device in failing_ids:
                produced_at[(device, ts)] = time.time() * 1000.0
            publisher.send(device, payload)
        sent += devices
        publisher.poll()
    publisher.flush(60)
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    _, _, metrics = drain(worker, int(before) + sent, timeout_s=120)
    consumed = int(metrics.get("floorwatch_readings_total", 0.0) - before)
    stages = stage_times(pages, _pages(worker))

    client = redis.Redis.from_url(settings.redis_url_value())
    latencies, alerts = [], 0
    for entry_id, fields in client.xrange(RedisKeys(settings.redis_prefix).alerts):
        alerts += 1
        alert = orjson.loads(fields[b"alert"])
        produced = produced_at.get((alert["device_id"], to_epoch_ms(alert["window_end"])))
        if produced is not None:
            latencies.append(int(entry_id.decode().split("-", 1)[0]) - produced)
    return Latency(
        offered_per_s=rate,
        achieved_per_s=round(sent / elapsed, 1) if elapsed else 0.0,
        devices=devices,
        seconds=round(elapsed, 2),
        readings=sent,
        consumed=consumed,
        alerts=alerts,
        matched=len(latencies),
        summary=summarize(latencies),
        stages=stages,
        stalls=int(metrics.get("floorwatch_consumer_stalls_total", 0.0)),
    )
