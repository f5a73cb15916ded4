"""The ``floorwatch`` command line. Every error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from .settings import Settings

if TYPE_CHECKING:
    from .model_store import ModelStore

app = typer.Typer(
    help="floorwatch: real-time anomaly detection for industrial sensors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="The versioned model store.", no_args_is_help=True)
alerts_app = typer.Typer(help="Read alerts from the alerts topic or Redis.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(alerts_app, name="alerts")

# Piped output gets a wide fixed width so tables are not truncated to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)


class CliError(Exception):
    """An error to print as one line."""


GroupOption = Annotated[
    Optional[str], typer.Option("--group", help="asset group (FLOORWATCH_ASSET_GROUPS); default: the default model")
]


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:  # name the variable and say what is wrong with it, on one line
        prefix = Settings.model_config.get("env_prefix", "")
        problems = "; ".join(f"{prefix}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise CliError(f"invalid configuration: {problems}") from exc


# --- services ------------------------------------------------------------------------------


@app.command()
def up(
    kafka_port: Annotated[int, typer.Option(help="Kafka port on 127.0.0.1 (the first node's)")] = 9092,
    redis_port: Annotated[int, typer.Option(help="Redis port on 127.0.0.1")] = 6379,
    broker: Annotated[str, typer.Option(help="embedded (Tansu, memory) or kafka (Apache Kafka, KRaft, on disk)")] = "embedded",
    nodes: Annotated[int, typer.Option(help="--broker kafka: 1 or 3 nodes")] = 1,
) -> None:
    """Start a Kafka broker and Redis on loopback, and create the topics."""
    from .embedded import EmbeddedServices
    from .topics import ensure_topics

    settings = _settings()
    if broker == "kafka":
        from .kafka_local import LocalKafkaServices

        if nodes not in (1, 3):
            raise CliError("--nodes must be 1 or 3")
        local = LocalKafkaServices(settings.state_dir, nodes=nodes, kafka_port=kafka_port, redis_port=redis_port,
                                   kafka_home=settings.kafka_home)  # fmt: skip
        cluster, redis = local.start()
        topics = ensure_topics(settings.model_copy(update={"kafka_bootstrap_servers": cluster.bootstrap_servers,
                                                           "kafka_profile": "kafka"}))  # fmt: skip
        pids = ", ".join(str(n.pid) for n in cluster.nodes)
        console.print(f"Kafka  {cluster.bootstrap_servers}  (Apache Kafka, {nodes} node(s), pid {pids}, data in {local.cluster.dir})")
        console.print(f"Redis  redis://{redis.host}:{redis.port}/0  (pid {redis.pid})")
        console.print("Topics " + ", ".join(f"{name}[{n}]" for name, n in topics.items()))
        console.print(f"Use it with KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap_servers} FLOORWATCH_KAFKA_PROFILE=kafka")
        return
    if broker != "embedded":
        raise CliError(f"--broker must be embedded or kafka, not {broker!r}")
    services = EmbeddedServices(settings.state_dir, kafka_port=kafka_port, redis_port=redis_port)
    state = services.start()
    topics = ensure_topics(settings.model_copy(update={"kafka_bootstrap_servers": state.bootstrap_servers}))
    console.print(f"Kafka  {state.bootstrap_servers}  (pid {state.kafka.pid}, memory storage)")
    console.print(f"Redis  {state.redis_url}  (pid {state.redis.pid})")
    console.print("Topics " + ", ".join(f"{name}[{n}]" for name, n in topics.items()))


@app.command()
def down(
    wipe: Annotated[bool, typer.Option(help="--broker kafka: also delete the local cluster's data")] = False,
) -> None:
    """Stop the services started by `floorwatch up` (embedded or local Apache Kafka)."""
    from .embedded import EmbeddedServices
    from .kafka_local import LocalKafkaServices

    settings = _settings()
    stopped = EmbeddedServices(settings.state_dir).stop()
    local = LocalKafkaServices(settings.state_dir)
    stopped = local.stop() or stopped
    if wipe:
        local.cluster.stop(wipe=True)
    console.print("stopped" if stopped else "nothing was running")


@app.command()
def topics() -> None:
    """Create the topics on the configured Kafka (existing ones are left as they are)."""
    from .topics import ensure_topics

    for name, n in ensure_topics(_settings()).items():
        console.print(f"{name}: {n} partition(s)")


@app.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets masked)."""
    for key, value in _settings().public_dump().items():
        console.print(f"{key} = {value}", markup=False, highlight=False)


# --- models --------------------------------------------------------------------------------


@app.command()
def train(
    csv: Annotated[Optional[list[Path]], typer.Option(help="CSV file(s) of normal data; default: simulated")] = None,
    features: Annotated[Optional[str], typer.Option(help="comma-separated sensor columns (CSV)")] = None,
    devices: Annotated[int, typer.Option(help="simulated devices")] = 40,
    samples: Annotated[int, typer.Option(help="simulated readings per device")] = 2000,
    window: Annotated[int, typer.Option(help="window length T")] = 16,
    units: Annotated[int, typer.Option(help="LSTM units")] = 16,
    epochs: Annotated[int, typer.Option()] = 15,
    quantile: Annotated[float, typer.Option(help="threshold quantile of validation scores")] = 0.999,
    multiplier: Annotated[float, typer.Option(help="threshold multiplier")] = 1.25,
    threshold_method: Annotated[str, typer.Option(help="quantile, per-feature or dynamic (telemanom: EWMA-smoothed scores)")] = "quantile",
    ewma_alpha: Annotated[float, typer.Option(help="dynamic method: EWMA smoothing factor")] = 0.2,
    seed: Annotated[int, typer.Option()] = 1,
    promote: Annotated[bool, typer.Option(help="make the new version current")] = True,
    if_missing: Annotated[bool, typer.Option(help="do nothing if the store has a current model")] = False,
    group: GroupOption = None,
) -> None:
    """Train an LSTM autoencoder on normal data and save it as a new model version."""
    from .training import TrainingConfig, train as train_model

    settings = _settings()
    store = _group_store(settings, group)
    if if_missing and store.current() is not None:
        console.print(f"model {store.load().version} exists; not training")
        return
    if csv:
        series, names, source = _csv_series(csv, features)
    else:
        from producers.scenarios import FEATURES
        from producers.simulator import normal_training_series

        series = normal_training_series(devices, samples, seed=seed)
        names, source = FEATURES, f"simulator: {devices} devices x {samples} readings, seed {seed}"
    config = TrainingConfig(
        window=window, units=units, epochs=epochs, quantile=quantile, multiplier=multiplier,
        threshold_method=threshold_method, ewma_alpha=ewma_alpha, seed=seed,
    )  # fmt: skip
    started = time.perf_counter()
    with console.status("training..."):
        bundle = train_model(series, names, store, config, source=source, promote=promote)
    v = bundle.card.validation
    console.print(
        f"[bold]{bundle.version}[/] saved in {bundle.path} ({time.perf_counter() - started:.0f}s): "
        f"threshold {bundle.thresholds.threshold:.3f}, validation loss {v.validation_loss:.4f}, "
        f"{v.validation_windows_over_threshold:.2%} of normal validation windows over threshold"
        + (" [green](current)[/]" if promote else "")
    )
    _note_if_unrouted(settings, group)


def _csv_series(paths: list[Path], features: str | None) -> tuple[list, list[str], str]:
    import numpy as np

    from producers.replay import read_recording

    columns = [c.strip() for c in features.split(",")] if features else None
    series, names = [], None
    for path in paths:
        names_here, rows = read_recording(path, time_column=None, columns=columns, delimiter=None)
        if names is not None and names_here != names:
            raise CliError(f"{path.name} has columns {names_here}, expected {names}")
        names = names_here
        series.append(np.array([values for _, values in rows], np.float32))
    return series, names or [], "csv: " + ", ".join(p.name for p in paths)


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json")] = False, group: GroupOption = None) -> None:
    """List model versions (the default model's, or an asset group's); the current one is marked."""
    from .model_store import stored_groups

    settings = _settings()
    store = _group_store(settings, group)
    cards, current = store.cards(), store.current()
    if as_json:
        import orjson

        sys.stdout.write(orjson.dumps([c.model_dump(mode="json") | {"current": c.version == current} for c in cards]).decode() + "\n")
        return
    table = Table("", "version", "created", "features", "T", "units", "val. loss", "over thr.", "source")
    for c in cards:
        table.add_row(
            "*" if c.version == current else "",
            c.version,
            c.created_at,
            ",".join(c.features),
            str(c.window),
            str(c.units),
            f"{c.validation.validation_loss:.4f}",
            f"{c.validation.validation_windows_over_threshold:.2%}",
            c.training.source,
        )
    console.print(table if cards else f"no models in {store.root}")
    if group is None and (groups := stored_groups(settings.model_dir)):
        console.print(f"asset groups with their own models: {', '.join(groups)} (see --group NAME)")


@models_app.command("promote")
def models_promote(version: str, group: GroupOption = None) -> None:
    """Make VERSION the model that workers load (for the default model, or an asset group's)."""
    settings = _settings()
    store = _group_store(settings, group)
    store.promote(version)
    console.print(f"{store.load(version).version} is now current; restart workers to load it")
    _note_if_unrouted(settings, group)


def _group_store(settings: Settings, group: str | None) -> ModelStore:
    """The model store for ``--group``; a bad name is a ValueError, so one error line."""
    from .model_store import ModelStore

    return ModelStore.for_group(settings.model_dir, group)


def _note_if_unrouted(settings: Settings, group: str | None) -> None:
    # Training a group's model before configuring the group is a fine order; say what is left to do.
    if group is not None and group not in {g.name for g in settings.asset_group_list()}:
        console.print(f"note: {group} is not in FLOORWATCH_ASSET_GROUPS yet; workers route no device to it until it is")


# --- worker and producers ------------------------------------------------------------------


@app.command()
def worker(
    model_version: Annotated[Optional[str], typer.Option(help="the default model's version; default: its current one")] = None,
) -> None:
    """Run a stream worker (a Faust app). Run several for more partitions' worth of throughput."""
    from .worker import run_worker

    run_worker(_settings(), model_version)


@app.command()
def simulate(
    devices: Annotated[int, typer.Option()] = 20,
    rate: Annotated[float, typer.Option(help="readings per second per device")] = 1.0,
    duration: Annotated[float, typer.Option(help="simulated seconds")] = 600.0,
    failures: Annotated[int, typer.Option(help="random failures on distinct devices")] = 0,
    kind: Annotated[Optional[list[str]], typer.Option(help="failure kinds to cycle through")] = None,
    scenario: Annotated[Optional[Path], typer.Option(help="YAML/JSON scenario file (overrides the above)")] = None,
    speed: Annotated[float, typer.Option(help="times real time; 0 = as fast as possible")] = 1.0,
    batch: Annotated[int, typer.Option(help="readings per message (batched form) ")] = 1,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Publish a simulated fleet's readings (and failure labels) to Kafka."""
    from producers.fleet import run_simulation
    from producers.scenarios import FailureKind, Scenario, load_scenario, random_failures

    if scenario is not None:
        plan = load_scenario(scenario)
    else:
        plan = Scenario(devices=devices, rate_hz=rate, duration_s=duration, seed=seed)
        try:
            kinds = [FailureKind(k) for k in kind] if kind else None
        except ValueError as exc:
            raise CliError(f"{exc}; kinds: {', '.join(k.value for k in FailureKind)}") from exc
        plan = plan.model_copy(update={"failures": random_failures(plan, failures, kinds)})
    now_ms = int(time.time() * 1000)
    # Played faster than real time, the run ends now rather than in the future.
    start_ms = now_ms - int(plan.duration_s * 1000) if speed <= 0 else now_ms
    stats, sim = run_simulation(_settings(), plan, start_ms=start_ms, speed=speed, batch=batch)
    console.print(
        f"published {stats.readings} readings from {plan.devices} devices in {stats.messages} messages "
        f"({stats.seconds:.1f}s); {len(sim.labels())} failure(s) injected"
    )
    for label in sim.labels():
        console.print(f"  {label.device_id}: {label.kind} on {label.sensor}")


@app.command()
def replay(
    file: Path,
    device: Annotated[str, typer.Option(help="device id to publish as")],
    speed: Annotated[float, typer.Option(help="times real time; 0 = as fast as possible")] = 1.0,
    time_column: Annotated[Optional[str], typer.Option(help="default: the first column")] = None,
    columns: Annotated[Optional[str], typer.Option(help="comma-separated sensor columns")] = None,
    delimiter: Annotated[Optional[str], typer.Option(help="default: guessed (, or ;)")] = None,
) -> None:
    """Publish a CSV recording to the readings topic as DEVICE."""
    from producers.replay import replay as replay_file

    cols = [c.strip() for c in columns.split(",")] if columns else None
    stats = replay_file(
        _settings(), file, device, speed=speed, time_column=time_column, columns=cols, delimiter=delimiter
    )
    console.print(f"published {stats.readings} readings as {device}")


# --- alerts --------------------------------------------------------------------------------


@alerts_app.command("tail")
def alerts_tail(
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest alert")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON alert per line")] = False,
    max_alerts: Annotated[int, typer.Option("--max", help="stop after N alerts (0 = never)")] = 0,
    idle_timeout: Annotated[float, typer.Option(help="stop after S seconds without alerts (0 = never)")] = 0.0,
) -> None:
    """Follow the alerts topic; duplicates (same alert_id) are shown once."""
    from .alert_consumer import follow_alerts

    for alert in follow_alerts(_settings(), from_beginning=from_beginning, max_alerts=max_alerts, idle_s=idle_timeout):
        _print_alert(alert, as_json)


@alerts_app.command("recent")
def alerts_recent(
    device: Annotated[Optional[str], typer.Option(help="only this device")] = None,
    count: Annotated[int, typer.Option(help="how many")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The newest alerts from Redis, newest first."""
    import redis.asyncio as aioredis

    from .sinks import recent_alerts

    settings = _settings()

    async def fetch() -> list:
        client = aioredis.from_url(settings.redis_url_value(), socket_connect_timeout=3)
        try:
            return await recent_alerts(client, settings.redis_prefix, device, count)
        finally:
            await client.aclose()

    alerts = asyncio.run(fetch())
    if as_json:
        for alert in alerts:
            _print_alert(alert, True)
        return
    table = Table("detected", "device", "episode", "severity", "score/thr", "top feature", "checks", "window end")
    for a in alerts:
        table.add_row(
            a.detected_at, a.device_id, a.episode.state, a.severity, f"{a.score:.2f}/{a.threshold:.2f}",
            a.top_feature, ",".join(a.check_failures), a.window_end,
        )  # fmt: skip
    console.print(table if alerts else "no alerts")


def _print_alert(alert, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        sys.stdout.write(alert.model_dump_json() + "\n")
        sys.stdout.flush()
        return
    colour = {"warning": "yellow", "major": "dark_orange", "critical": "red"}[alert.severity]
    console.print(
        f"[{colour}]{alert.severity:8}[/] {alert.device_id:14} episode {alert.episode.state:6} "
        f"score {alert.score:.2f}/{alert.threshold:.2f} top {alert.top_feature}"
        + (f" checks {','.join(alert.check_failures)}" if alert.check_failures else "")
        + f"  window end {alert.window_end}"
    )


@app.command()
def bench(
    out: Annotated[Path, typer.Option(help="JSON results file")] = Path("bench-results/bench.json"),
    model_dir: Annotated[Optional[Path], typer.Option(help="model store; default: the configured one, else train")] = None,
    batch_sizes: Annotated[str, typer.Option(help="model-only batch sizes, comma-separated")] = "1,64,256,1024,4096",
    devices: Annotated[int, typer.Option(help="devices in the throughput backlog")] = 1000,
    readings: Annotated[int, typer.Option(help="readings per device in the throughput backlog")] = 1000,
    batched_form: Annotated[int, typer.Option(help="readings per message in the batched run (0 = skip)")] = 10,
    rates: Annotated[str, typer.Option(help="offered readings/s of each latency run, comma-separated")] = "10000,5000",
    latency_seconds: Annotated[float, typer.Option(help="length of the latency run")] = 20.0,
    memory_devices: Annotated[str, typer.Option(help="device counts for the memory run")] = "1000,10000,100000",
    e2e: Annotated[bool, typer.Option(help="run the end-to-end parts (embedded services + a worker)")] = True,
    broker: Annotated[str, typer.Option(help="end-to-end broker: embedded, or kafka (a local Apache Kafka; FLOORWATCH_KAFKA_TRANSACTIONS=false for no transactions)")] = "embedded",
) -> None:
    """Benchmark: model-only scoring, end-to-end throughput and latency, memory; a table and JSON."""
    from .bench import BenchConfig, print_result, run_bench

    def ints(text: str) -> list[int]:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise CliError(f"expected comma-separated integers, got {text!r}") from exc

    config = BenchConfig(
        batch_sizes=ints(batch_sizes), devices=devices, readings_per_device=readings, batched_form=batched_form,
        latency_rates=[float(r) for r in ints(rates)], latency_seconds=latency_seconds, memory_devices=ints(memory_devices), e2e=e2e,
    )  # fmt: skip
    if broker not in ("embedded", "kafka"):
        raise CliError(f"--broker must be embedded or kafka, not {broker!r}")
    config.broker = broker  # type: ignore[assignment]
    if broker == "kafka" and e2e:
        from .kafka_local import kafka_available

        if (reason := kafka_available(_settings().kafka_home)) is not None:
            raise CliError(reason)
    if model_dir is not None and not model_dir.is_dir():
        raise CliError(f"model store {model_dir} does not exist")
    result = run_bench(_settings(), config, console, model_dir=model_dir)
    print_result(result, console)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.model_dump_json(indent=2))
    console.print(f"results written to {out}")


@app.command()
def evaluate(
    simulate: Annotated[bool, typer.Option("--simulate", help="a simulated fleet with injected failures")] = False,
    devices: Annotated[int, typer.Option(help="simulated devices")] = 20,
    duration: Annotated[float, typer.Option(help="simulated seconds")] = 3600.0,
    failures: Annotated[int, typer.Option(help="simulated failures on distinct devices")] = 4,
    kind: Annotated[Optional[list[str]], typer.Option(help="failure kinds to cycle through")] = None,
    seed: Annotated[int, typer.Option(help="simulation seed")] = 7,
    scenario: Annotated[Optional[Path], typer.Option(help="YAML/JSON scenario file (instead of the flags above)")] = None,
    csv: Annotated[Optional[list[Path]], typer.Option(help="labelled CSV recording(s), one device each")] = None,
    label_column: Annotated[str, typer.Option(help="CSV: 0/1 label column")] = "anomaly",
    time_column: Annotated[Optional[str], typer.Option(help="CSV: time column (default: the first)")] = None,
    features: Annotated[Optional[str], typer.Option(help="CSV or SKAB: comma-separated sensor columns (default: all sensors)")] = None,
    train_rows: Annotated[int, typer.Option(help="CSV: train a model per file on its first N rows (0: use the stored model)")] = 0,
    skab: Annotated[Optional[Path], typer.Option(help="SKAB data folder, e.g. ../shared/data/skab (SKAB protocol)")] = None,
    detector: Annotated[str, typer.Option(help="lstm (autoencoder) or iforest (IsolationForest baseline)")] = "lstm",
    point_mode: Annotated[str, typer.Option(help="a point is anomalous when its device's episode is open (episode) or its window is over the line (window)")] = "episode",
    train_model: Annotated[bool, typer.Option("--train", help="simulate/csv: train a fresh model instead of the stored one")] = False,
    model_version: Annotated[Optional[str], typer.Option(help="stored model version (default: current)")] = None,
    threshold_method: Annotated[str, typer.Option(help="quantile, per-feature or dynamic (telemanom)")] = "quantile",
    quantile: Annotated[float, typer.Option(help="threshold quantile of validation scores")] = 0.999,
    multiplier: Annotated[float, typer.Option(help="threshold multiplier")] = 1.25,
    ewma_alpha: Annotated[float, typer.Option(help="dynamic method: EWMA smoothing factor")] = 0.2,
    window: Annotated[Optional[int], typer.Option(help="window length T (default 16; 10 per SKAB file)")] = None,
    units: Annotated[Optional[int], typer.Option(help="LSTM units (default 16; 8 per SKAB file)")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="training epochs (default 15; 20 per SKAB file)")] = None,
    level_checks: Annotated[bool, typer.Option(help="apply the level envelope check beside the model")] = True,
    max_gap: Annotated[Optional[float], typer.Option(help="window restart after a silence, seconds (default: config; 300 for SKAB)")] = None,
    batch_size: Annotated[int, typer.Option(help="readings per micro-batch")] = 256,
    plot: Annotated[Optional[Path], typer.Option(help="write PNG plots to this folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Run the worker's detector over labelled data: point-wise and event-wise detection quality."""
    from .evaluate import run_evaluation, print_report, EvaluateRequest

    if sum([simulate or scenario is not None, bool(csv), skab is not None]) != 1:
        raise CliError("choose one source: --simulate (or --scenario FILE), --csv FILE or --skab DIR")
    request = EvaluateRequest(
        source="skab" if skab is not None else "csv" if csv else "simulate",
        devices=devices, duration_s=duration, failures=failures, kinds=kind or [], seed=seed, scenario=scenario,
        csv=csv or [], label_column=label_column, time_column=time_column,
        features=[f.strip() for f in features.split(",")] if features else None, train_rows=train_rows,
        skab=skab, detector=detector, point_mode=point_mode, train=train_model, model_version=model_version,
        threshold_method=threshold_method, quantile=quantile, multiplier=multiplier, ewma_alpha=ewma_alpha,
        window=window, units=units, epochs=epochs, level_checks=level_checks, max_gap_s=max_gap, batch_size=batch_size,
    )  # fmt: skip
    with console.status("evaluating...", spinner="dots") if not as_json else nullcontext():
        report, traces = run_evaluation(_settings(), request)
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        print_report(report, console)
    if plot is not None:
        from .plots import write_plots

        written = write_plots(traces, plot, title=f"{report.source} ({report.detector}, {report.threshold_method})")
        (console if not as_json else Console(stderr=True)).print(f"{len(written)} plots written to {plot}")


# --- demo ----------------------------------------------------------------------------------


@app.command()
def demo(
    devices: Annotated[int, typer.Option()] = 20,
    duration: Annotated[float, typer.Option(help="simulated seconds")] = 900.0,
    failures: Annotated[int, typer.Option(help="failures injected on distinct devices")] = 4,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Run the whole pipeline on embedded services and print what the detector found."""
    from .demo import run_demo

    ok = run_demo(_settings(), console, devices=devices, duration_s=duration, failures=failures, seed=seed)
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point: known failures become one line on stderr."""
    from confluent_kafka import KafkaException
    from redis.exceptions import RedisError

    from typer.exceptions import TyperException

    from producers.publish import PublishError
    from producers.replay import ReplayError

    from .demo import DemoError
    from .embedded import EmbeddedError
    from .kafka_config import KafkaLoginError
    from .model_store import ModelStoreError

    # TensorFlow's C++ start-up chatter is noise on a terminal; its errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        app(standalone_mode=False)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)))
    except typer.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        sys.exit(130)
    except (CliError, ModelStoreError, EmbeddedError, DemoError, PublishError, ReplayError, KafkaLoginError, ValueError) as exc:
        _fail(str(exc))
    except (KafkaException, RedisError, OSError) as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    except TyperException as exc:  # usage errors: unknown command, bad option value, ...
        _fail(exc.format_message() if hasattr(exc, "format_message") else str(exc), getattr(exc, "exit_code", 2))
    except Exception as exc:
        _fail(f"unexpected {type(exc).__name__}: {exc}")


def _fail(message: str, code: int = 1) -> None:
    # One line, never wrapped, whatever the terminal width.
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    sys.exit(code)
