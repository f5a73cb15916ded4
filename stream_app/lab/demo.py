"""``floorwatch demo``: the whole pipeline on fresh embedded services, then a summary.

Starts its own broker and Redis on free loopback ports (so it never touches services you run),
trains a model if the store has none, runs a worker process, publishes a simulated fleet with
injected failures plus a few malformed messages, waits until the worker has scored every
reading, and prints what was detected. Everything it started is stopped before it returns.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import redis
from rich.console import Console
from rich.table import Table

from stream_app.errors import FloorwatchError
from producers.fleet import run_simulation
from producers.publish import ReadingPublisher
from producers.scenarios import Scenario, random_failures
from producers.simulator import FleetSimulator

from stream_app.contracts import Alert
from stream_app.lab.harness import WorkerExited, WorkerProcess, fresh_services
from stream_app.lab.evaluation import match_episodes
from stream_app.models.store import ModelStore
from stream_app.config.settings import Settings
from stream_app.worker.sinks import RedisKeys
from stream_app.worker.topics import ensure_topics, read_topic


class DemoError(FloorwatchError):
    """The demo could not run to the end (a service or the worker failed)."""


MALFORMED = [b"not json at all", b'{"device_id": "press-00", "values": {"temperature": "hot"}}', b"[1, 2, 3]"]


def run_demo(base: Settings, console: Console, *, devices: int, duration_s: float, failures: int, seed: int) -> bool:
    state_dir = base.state_dir / "demo"
    with ExitStack() as stack:
        with console.status("starting the embedded broker and Redis..."):
            settings = stack.enter_context(fresh_services(base, state_dir, app_id=f"floorwatch-demo-{int(time.time())}"))
        try:
            return _run(settings, state_dir, console, devices=devices, duration_s=duration_s, failures=failures, seed=seed)
        except WorkerExited as exc:
            raise DemoError(str(exc).splitlines()[0]) from exc


def _run(settings: Settings, state_dir: Path, console: Console, *, devices: int, duration_s: float, failures: int, seed: int) -> bool:
    ensure_topics(settings)
    console.print(f"[green]✓[/] Kafka (Tansu) on {settings.kafka_bootstrap_servers}, Redis on {settings.redis_url_value()}")
    store = ModelStore(settings.model_dir)
    if store.current() is None:
        _train(settings, console)
    console.print(f"[green]✓[/] model {store.current()} from {settings.model_dir}")

    with WorkerProcess(settings, state_dir / "logs" / "worker.log") as worker:
        console.print(f"[green]✓[/] worker started (pid {worker.pid}, log {worker.log})")
        plan = Scenario(devices=devices, duration_s=duration_s, seed=seed)
        plan = plan.model_copy(update={"failures": random_failures(plan, failures)})
        start_ms = int(time.time() * 1000) - int(duration_s * 1000)
        with console.status("publishing the simulated fleet..."):
            stats, sim = run_simulation(settings, plan, start_ms=start_ms, speed=0)
            bad = ReadingPublisher(settings)
            for payload in MALFORMED:
                bad.send("press-00", payload)
            bad.flush()
        console.print(
            f"[green]✓[/] published {stats.readings} readings from {devices} devices in {stats.seconds:.1f}s, "
            f"{len(sim.labels())} injected failures, {len(MALFORMED)} malformed messages"
        )

        client = redis.Redis.from_url(settings.redis_url_value())
        with console.status("waiting for the worker to score every reading..."):
            waited = _wait_until_scored(client, settings, stats.last_ts_ms or {}, worker, timeout_s=240)
        console.print(f"[green]✓[/] worker caught up in {waited:.1f}s")
        alerts = [Alert.model_validate_json(f[b"alert"]) for _, f in client.xrange(RedisKeys(settings.redis_prefix).alerts)]
        dead = len(read_topic(settings, settings.dlq_topic, idle_s=1.5, name="demo-count"))
        return _summary(console, sim, plan, stats.readings, alerts, dead)


def _train(settings: Settings, console: Console) -> None:
    from stream_app.training.recipe import train_default

    with console.status("no model yet: training one on simulated normal data (about a minute)..."):
        bundle = train_default(ModelStore(settings.model_dir))
    console.print(f"[green]✓[/] trained {bundle.version}, threshold {bundle.thresholds.threshold:.3f}")


def _wait_until_scored(
    client: redis.Redis,
    settings: Settings,
    last_ts: dict[str, int],
    worker: WorkerProcess,
    timeout_s: float,
) -> float:
    from stream_app.contracts import iso_ms

    keys = RedisKeys(settings.redis_prefix)
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        worker.check()
        pipe = client.pipeline()
        for device in last_ts:
            pipe.hget(keys.device(device), "last_reading_ts")
        seen = pipe.execute()
        if all(v is not None and v.decode() >= iso_ms(last_ts[d]) for d, v in zip(last_ts, seen)):
            time.sleep(0.5)  # let the last batch's alerts land
            return time.monotonic() - started
        time.sleep(0.25)
    raise DemoError(f"the worker did not score every reading within {timeout_s:.0f}s; see {worker.log}")


def _summary(console: Console, sim: FleetSimulator, plan: Scenario, readings: int, alerts: list[Alert], dead: int) -> bool:
    period_ms = int(sim.period_ms)
    report = match_episodes(sim.labels(), alerts, grace_ms=16 * period_ms)
    table = Table(title="Injected failures")
    for col in ("device", "failure", "sensor", "injected at", "detected", "delay", "episodes"):
        table.add_column(col)
    for f in report.failures:
        delay = "-" if f.delay_ms is None else f"{f.delay_ms / 1000:.0f}s ({f.delay_ms // period_ms} samples)"
        table.add_row(
            f.label.device_id, f.label.kind, f.label.sensor or "", _hms(f.label.start),
            "[green]yes[/]" if f.detected_ms is not None else "[red]no[/]", delay, str(f.episodes),
        )  # fmt: skip
    console.print(table)

    delays = report.delays_s()
    healthy = plan.devices - len({f.label.device_id for f in report.failures})
    totals = Table(title="Summary", show_header=False)
    totals.add_column(style="bold")
    totals.add_column()
    rows = [
        ("devices", f"{plan.devices} ({healthy} healthy)"),
        ("readings", str(readings)),
        ("injected failures", str(len(report.failures))),
        ("detected", f"{report.detected} of {len(report.failures)}"),
        ("alert episodes", str(report.episodes)),
        ("alert messages in Redis", f"{len(alerts)} (open, severity updates, close)"),
        ("detection delay", f"median {np.median(delays):.0f}s, max {delays.max():.0f}s" if len(delays) else "-"),
        ("false alerts on healthy devices", str(len(report.false_alerts))),
        ("dead letters", str(dead)),
    ]
    for key, value in rows:
        totals.add_row(key, value)
    console.print(totals)
    ok = report.detected == len(report.failures) and not report.false_alerts
    console.print("[green]every injected failure detected, no false alert[/]" if ok else "[red]detection incomplete[/]")
    return ok


def _hms(epoch_ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch_ms / 1000))

