"""The ``floorwatch`` command line. Every error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from stream_app.config.settings import Settings
from stream_app.errors import FloorwatchError
from stream_app.pipeline.line_methods import METHODS, Dynamic, line_method
from stream_app.training.recipe import DEFAULT_DATA, DEFAULT_TRAINING, SimulatedNormal

if TYPE_CHECKING:
    from stream_app.contracts import Alert
    from stream_app.models.store import ModelStore
    from stream_app.worker.health import HealthEvent

app = typer.Typer(
    help="floorwatch: real-time anomaly detection for industrial sensors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="The versioned model store.", no_args_is_help=True)
alerts_app = typer.Typer(help="Read alerts from the alerts topic or Redis.", no_args_is_help=True)
dlq_app = typer.Typer(help="Read the dead-letter topic: what was refused, and why.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(alerts_app, name="alerts")
app.add_typer(dlq_app, name="dlq")

# Piped output gets a wide fixed width so tables are not truncated to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)


class CliError(FloorwatchError):
    """An error to print as one line."""


GroupOption = Annotated[
    Optional[str], typer.Option("--group", help="asset group (FLOORWATCH_ASSET_GROUPS); default: the default model")
]


def _threshold_method(name: str) -> str:
    try:
        line_method(name)  # refused before any data is read or model trained
    except ValueError as exc:
        raise CliError(f"--threshold-method: {exc}") from None
    return name


# Both named from line_methods.METHODS, the registry the model card's method is looked up in.
ThresholdMethodOption = Annotated[
    str, typer.Option(callback=_threshold_method, help=f"how the alerting line is calibrated: {', '.join(METHODS)}")
]
EwmaAlphaOption = Annotated[float, typer.Option(help=f"{Dynamic.name} method (telemanom's): EWMA smoothing factor")]


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:  # name the variable and say what is wrong with it, on one line
        prefix = Settings.model_config.get("env_prefix", "")
        problems = "; ".join(f"{prefix}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise CliError(f"invalid configuration: {problems}") from exc


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("floorwatch")
        except PackageNotFoundError:  # run from a source tree that was never installed
            found = "unknown (not installed)"
        console.print(f"floorwatch {found}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """floorwatch: real-time anomaly detection for industrial sensors."""


# --- services ------------------------------------------------------------------------------


@app.command()
def up(
    kafka_port: Annotated[int, typer.Option(help="Kafka port on 127.0.0.1 (the first node's)")] = 9092,
    redis_port: Annotated[int, typer.Option(help="Redis port on 127.0.0.1")] = 6379,
    broker: Annotated[str, typer.Option(help="embedded (Tansu, memory) or kafka (Apache Kafka, KRaft, on disk)")] = "embedded",
    nodes: Annotated[int, typer.Option(help="--broker kafka: 1 or 3 nodes")] = 1,
) -> None:
    """Start a Kafka broker and Redis on loopback, and create the topics."""
    from stream_app.lab.embedded import EmbeddedServices
    from stream_app.worker.topics import ensure_topics

    settings = _settings()
    if broker == "kafka":
        from stream_app.lab.kafka_local import LocalKafkaServices

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
    from stream_app.lab.embedded import EmbeddedServices
    from stream_app.lab.kafka_local import LocalKafkaServices

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
    from stream_app.worker.topics import ensure_topics

    for name, n in ensure_topics(_settings()).items():
        console.print(f"{name}: {n} partition(s)")


@app.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets masked)."""
    for section, values in _settings().public_sections().items():
        console.print(f"[{section}]", markup=False, highlight=False)
        for key, value in values.items():
            console.print(f"{key} = {value}", markup=False, highlight=False)


# --- models --------------------------------------------------------------------------------


@app.command()
def train(
    csv: Annotated[Optional[list[Path]], typer.Option(help="CSV file(s) of normal data; default: simulated")] = None,
    features: Annotated[Optional[str], typer.Option(help="comma-separated sensor columns (CSV)")] = None,
    devices: Annotated[int, typer.Option(help="simulated devices")] = DEFAULT_DATA.devices,
    samples: Annotated[int, typer.Option(help="simulated readings per device")] = DEFAULT_DATA.samples,
    window: Annotated[int, typer.Option(help="window length T")] = DEFAULT_TRAINING.window,
    units: Annotated[int, typer.Option(help="LSTM units")] = DEFAULT_TRAINING.units,
    epochs: Annotated[int, typer.Option()] = DEFAULT_TRAINING.epochs,
    quantile: Annotated[float, typer.Option(help="threshold quantile of validation scores")] = DEFAULT_TRAINING.quantile,
    multiplier: Annotated[float, typer.Option(help="threshold multiplier")] = DEFAULT_TRAINING.multiplier,
    threshold_method: ThresholdMethodOption = DEFAULT_TRAINING.threshold_method,
    ewma_alpha: EwmaAlphaOption = DEFAULT_TRAINING.ewma_alpha,
    seed: Annotated[int, typer.Option()] = DEFAULT_DATA.seed,
    promote: Annotated[bool, typer.Option(help="make the new version current")] = True,
    if_missing: Annotated[bool, typer.Option(help="do nothing if the store has a current model")] = False,
    group: GroupOption = None,
    from_topic: Annotated[bool, typer.Option("--from-topic", help="train a candidate on recent readings from the readings topic (not promoted)")] = False,
    since: Annotated[str, typer.Option(help="--from-topic: how far back, e.g. 24h, 90m, 2d")] = "24h",
) -> None:
    """Train an LSTM autoencoder on normal data and save it as a new model version."""
    from stream_app.training.fit import TrainingConfig, train as train_model

    settings = _settings()
    store = _group_store(settings, group)
    if from_topic:
        from stream_app.ops.retrain import train_from_topic

        config = TrainingConfig(window=window, units=units, epochs=epochs, quantile=quantile, multiplier=multiplier,
                                threshold_method=threshold_method, ewma_alpha=ewma_alpha, seed=seed)  # fmt: skip
        names = [f.strip() for f in features.split(",")] if features else None
        with console.status("reading the topic and training..."):
            bundle, summary = train_from_topic(settings, since, group, config, features=names)
        normal, cmp = summary["normal"], summary["comparison"]
        v = bundle.card.validation
        console.print(f"[bold]{bundle.version}[/] saved in {bundle.path} (not promoted): {bundle.card.training.source}")
        console.print("left out: " + ", ".join(f"{n} {k}" for k, n in summary["counts"].items()))
        console.print(f"candidate: threshold {bundle.thresholds.threshold:.3f}, "
                      f"{v.validation_windows_over_threshold:.2%} of recent normal windows over its line")  # fmt: skip
        if cmp is not None:
            console.print(f"current {cmp['version']}: threshold {cmp['threshold']:.3f}, "
                          f"{cmp['validation_windows_over_threshold']:.2%} of the same windows over its line")  # fmt: skip
        console.print(f"next: floorwatch models shadow {bundle.card.version}" + (f" --group {group}" if group else "")
                      + f", then models compare, promote {bundle.card.version} or discard it")  # fmt: skip
        return
    if if_missing and store.current() is not None:
        console.print(f"model {store.load().version} exists; not training")
        return
    if csv:
        series, names, source = _csv_series(csv, features)
    else:
        from producers.scenarios import FEATURES

        data = SimulatedNormal(devices=devices, samples=samples, seed=seed)
        series, names, source = data.series(), FEATURES, data.source()
    config = TrainingConfig(
        window=window, units=units, epochs=epochs, quantile=quantile, multiplier=multiplier,
        threshold_method=threshold_method, ewma_alpha=ewma_alpha, seed=seed,
    )  # fmt: skip
    from stream_app.progress import EpochProgress

    started = time.perf_counter()
    with EpochProgress(console, epochs) as progress:
        bundle = train_model(series, names, store, config, source=source, promote=promote, on_epoch=progress.epoch)
    v = bundle.card.validation
    console.print(
        f"[bold]{bundle.version}[/] saved in {bundle.path} ({time.perf_counter() - started:.0f}s): "
        f"threshold {bundle.thresholds.threshold:.3f}, validation loss {v.validation_loss:.4f}, "
        f"{v.validation_windows_over_threshold:.2%} of normal validation windows over threshold"
        + (" [green](current)[/]" if promote else "")
    )
    centred = [f for f, c in zip(bundle.card.features, bundle.scaler.centred) if c]
    if centred:
        from stream_app.training.wander import CENTRED_NOTE

        console.print(f"{', '.join(centred)}: {CENTRED_NOTE}")
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
    from stream_app.models.store import stored_groups

    settings = _settings()
    store = _group_store(settings, group)
    cards, current, shadow = store.cards(), store.current(), store.shadow_version()
    if as_json:
        import orjson

        sys.stdout.write(orjson.dumps([c.model_dump(mode="json") | {"current": c.version == current} for c in cards]).decode() + "\n")
        return
    table = Table("", "version", "created", "features", "T", "units", "val. loss", "over thr.", "source")
    for c in cards:
        table.add_row(
            "*" if c.version == current else "shadow" if c.version == shadow else "",
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
    previous = store.promote(version)
    console.print(
        f"{store.load(version).version} is now current (was {previous or 'none'}); running workers swap to it "
        "within seconds, between two batches (see `floorwatch models history`)"
    )
    _note_if_unrouted(settings, group)


@models_app.command("rollback")
def models_rollback(group: GroupOption = None) -> None:
    """Make the version current again that the current one replaced (for the default model, or an asset group's)."""
    settings = _settings()
    store = _group_store(settings, group)
    previous, target = store.rollback()
    console.print(f"rolled back {previous} -> {target}; running workers swap to it within seconds")


@models_app.command("shadow")
def models_shadow(
    version: Annotated[Optional[str], typer.Argument(help="the candidate version to score beside the current one")] = None,
    off: Annotated[bool, typer.Option("--off", help="stop shadow scoring")] = False,
    group: GroupOption = None,
) -> None:
    """Make workers score VERSION beside the current model; its alerts go to a shadow stream only."""
    store = _group_store(_settings(), group)
    if off == (version is not None):
        raise CliError("give a VERSION to shadow, or --off")
    if off:
        previous = store.set_shadow(None)
        console.print(f"shadow scoring ended ({previous or 'none was set'})")
        return
    assert version is not None
    if version == store.current():
        raise CliError(f"{version} is the current version already; shadow a candidate")
    store.load(version)  # a version whose files cannot be read is refused here, not only by the workers
    store.set_shadow(version)
    console.print(
        f"workers score {version} beside {store.current()} within seconds; its alerts go to the shadow stream only. "
        "See `floorwatch models compare`."
    )


@models_app.command("compare")
def models_compare(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Champion and challenger on the same readings: alert rates, agreement, precision on feedback, scoring cost."""
    from stream_app.config.redis_client import async_redis

    from stream_app.worker.feedback import FeedbackStore
    from stream_app.worker.shadow import shadow_alerts, shadow_stats

    settings = _settings()

    async def fetch() -> tuple[Any, ...]:
        client = async_redis(settings)
        try:
            feedback = FeedbackStore(client, settings.redis_prefix)
            return (await shadow_stats(client, settings.redis_prefix), await shadow_alerts(client, settings.redis_prefix),
                    await feedback.precision(), await feedback.labelled_episodes())  # fmt: skip
        finally:
            await client.aclose()

    stats, alerts, precision, labelled = asyncio.run(fetch())
    rows = []
    for candidate, c in stats.items():
        num = lambda k: float(c.get(k, 0) or 0)  # noqa: E731
        champion = c.get("champion", "")
        confirmed = false = 0
        for alert in (a for a in alerts if a.model_version == candidate and a.episode.state == "open"):
            from stream_app.contracts import to_epoch_ms

            start = to_epoch_ms(alert.episode.started_at)
            for label in labelled:
                end = label.get("end_ms") or float("inf")
                if label["device_id"] == alert.device_id and label["start_ms"] - 60_000 <= start <= end:
                    confirmed += label["verdict"] == "confirmed"
                    false += label["verdict"] == "false_alarm"
                    break
        champ = precision.get(champion)
        per_k = lambda n, w: 1000.0 * n / w if w else 0.0  # noqa: E731
        rows.append({
            "group": c.get("group", ""), "champion": champion, "challenger": candidate, "readings": int(num("readings")),
            "windows": {"champion": int(num("champion_windows")), "challenger": int(num("windows"))},
            "over_line_share": {"champion": num("champion_over_line") / num("champion_windows") if num("champion_windows") else None,
                                "challenger": num("over_line") / num("windows") if num("windows") else None},
            "alerts_opened": {"champion": int(num("champion_alerts_opened")), "challenger": int(num("alerts_opened"))},
            "agreement": num("agree") / num("compared") if num("compared") else None,
            "precision": {"champion": champ.precision if champ else None,
                          "challenger": confirmed / (confirmed + false) if confirmed + false else None},
            "ms_per_1k_windows": {"champion": per_k(num("champion_seconds") * 1000, num("champion_windows")),
                                  "challenger": per_k(num("seconds") * 1000, num("windows"))},
        })  # fmt: skip
    if as_json:
        import orjson

        sys.stdout.write(orjson.dumps(rows).decode() + "\n")
        return
    if not rows:
        console.print("no shadow results yet (floorwatch models shadow VERSION)")
        return
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    table = Table("group", "model", "role", "windows", "over line", "alerts opened", "agreement", "precision", "ms/1k windows")
    for r in rows:
        for role, version in (("champion", r["champion"]), ("challenger", r["challenger"])):
            table.add_row(r["group"], version, role, str(r["windows"][role]), fmt(r["over_line_share"][role], ".3%"),
                          str(r["alerts_opened"][role]), fmt(r["agreement"], ".2%"), fmt(r["precision"][role], ".2f"),
                          f"{r['ms_per_1k_windows'][role]:.1f}")  # fmt: skip
    console.print(table)


@models_app.command("autopilot")
def models_autopilot(group: GroupOption = None) -> None:
    """The automatic policy (off unless FLOORWATCH_POLICY_ENABLED=true): on a drift event, retrain from the
    stream, shadow the candidate, promote it if it meets the criteria; every step in `models history`."""
    from stream_app.config.redis_client import async_redis

    from stream_app.ops.policy import Criteria, next_drift_event, run_once
    from stream_app.ops.retrain import parse_since
    from stream_app.pipeline.routing import DEFAULT_GROUP

    settings = _settings()
    if not settings.policy_enabled:
        raise CliError("the automatic policy is off: set FLOORWATCH_POLICY_ENABLED=true to run it")
    parse_since(settings.policy_train_since)  # a bad value fails now, not after the first drift event
    name = group or DEFAULT_GROUP
    criteria = Criteria(min_windows=settings.policy_min_windows, max_over_line_share=settings.policy_max_over_line_share)
    console.print(f"autopilot for group {name}: waiting for drift events (Ctrl-C to stop)")
    last_id = "$"
    while True:
        async def wait(last: str) -> tuple[str, HealthEvent]:
            client = async_redis(settings, blocking=True)  # XREAD BLOCK waits by design
            try:
                return await next_drift_event(client, settings.redis_prefix, name, last)
            finally:
                await client.aclose()

        last_id, event = asyncio.run(wait(last_id))
        verdict = run_once(settings, name, event, shadow_s=settings.policy_shadow_s,
                           since=settings.policy_train_since, criteria=criteria)  # fmt: skip
        console.print(("promoted: " if verdict.promote else "not promoted: ") + verdict.reason)


@models_app.command("health")
def models_health(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    events: Annotated[int, typer.Option(help="how many recent model-health events to show")] = 10,
) -> None:
    """Drift figures per asset group and feature (from the workers), recent model-health events, and
    each model version's precision from operator feedback."""
    from stream_app.config.redis_client import async_redis

    from stream_app.worker.feedback import FeedbackStore
    from stream_app.worker.health import read_events, read_figures
    from stream_app.pipeline.routing import DEFAULT_GROUP

    settings = _settings()
    groups = [DEFAULT_GROUP, *(g.name for g in settings.asset_group_list())]

    async def fetch() -> tuple[Any, ...]:
        client = async_redis(settings)
        try:
            return (
                await read_figures(client, settings.redis_prefix, groups),
                await read_events(client, settings.redis_prefix, events),
                await FeedbackStore(client, settings.redis_prefix).precision(),
            )
        finally:
            await client.aclose()

    figures, recent, precision = asyncio.run(fetch())
    if as_json:
        import orjson

        doc = {
            "figures": figures,
            "events": [e.model_dump(mode="json") for e in recent],
            "precision": {v: p.model_dump() | {"precision": p.precision} for v, p in precision.items()},
        }
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        return
    table = Table("group", "model", "figure", "feature", "value", "limit", "")
    for group, found in figures.items():
        for key, f in found.items():
            figure, _, feature = key.partition(":")
            over = float(f["value"]) > float(f["limit"])
            table.add_row(group, str(f.get("model_version", "")), figure, feature, f"{f['value']:.4f}", f"{f['limit']:g}",
                          "[red]over[/]" if over else "ok")  # fmt: skip
    console.print(table if any(figures.values()) else "no drift figures yet (workers write them once a minute of readings)")
    ptable = Table("model", "labelled episodes", "confirmed", "false alarms", "precision")
    for version, p in precision.items():
        ptable.add_row(version, str(p.labelled), str(p.confirmed), str(p.false_alarms),
                       f"{p.precision:.2f}" if p.precision is not None else "-")  # fmt: skip
    console.print(ptable if precision else "no operator feedback yet (floorwatch alerts label ALERT_ID --confirmed|--false-alarm)")
    for e in recent:
        console.print(f"{e.at}  {e.kind:12} {e.message}", markup=False, highlight=False)


@models_app.command("history")
def models_history(group: GroupOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The model store's audit log: train, promote, rollback, shadow, refused versions (oldest first)."""
    store = _group_store(_settings(), group)
    entries = store.audit.entries()
    if as_json:
        for entry in entries:
            sys.stdout.write(entry.model_dump_json() + "\n")
        return
    table = Table("at", "action", "version", "previous", "by", "note")
    for e in entries:
        table.add_row(e.at, e.action, e.version or "", e.previous or "", e.by, e.note[:80])
    console.print(table if entries else f"no history in {store.root}")


def _group_store(settings: Settings, group: str | None) -> ModelStore:
    """The model store for ``--group``; a bad name is a ValueError, so one error line."""
    from stream_app.models.store import ModelStore

    return ModelStore.for_group(settings.model_dir, group)


def _note_if_unrouted(settings: Settings, group: str | None) -> None:
    # Training a group's model before configuring the group is a fine order; say what is left to do.
    if group is not None and group not in {g.name for g in settings.asset_group_list()}:
        console.print(f"note: {group} is not in FLOORWATCH_ASSET_GROUPS yet; workers route no device to it until it is")


# --- worker and producers ------------------------------------------------------------------


@app.command()
def worker(
    model_version: Annotated[Optional[str], typer.Option(help="the default model's version; default: its current one")] = None,
    processes: Annotated[Optional[int], typer.Option(help="worker processes in one consumer group, metrics on port + i (default and 0: one per core, at most one per readings partition)")] = None,
    log_format: Annotated[Optional[str], typer.Option(help="text, or json: one JSON object per log line (default: FLOORWATCH_LOG_FORMAT, else text)")] = None,
) -> None:
    """Run a stream worker (a Faust app); --processes N runs N of them, supervised, for more cores."""
    from stream_app.worker.logs import JsonLogFormatter, use_json_logs
    from stream_app.worker.processes import PARENT_ENV, Supervisor, default_processes, die_with_parent, worker_command

    settings = _settings()
    if log_format is not None:
        if log_format not in ("text", "json"):
            raise CliError(f"--log-format must be text or json, not {log_format!r}")
        settings = settings.model_copy(update={"log_format": log_format})
    if settings.log_format == "json":  # from here on: the models' loading, a start-up error (_fail) too
        use_json_logs(settings.log_level, settings.secrets())
    if processes is None:  # one per core; a supervised child is one process
        processes = 1 if os.environ.get(PARENT_ENV) else 0
    if processes < 0:
        raise CliError("--processes must be 0 (one per core) or more")
    # One per core, but no more than the readings topic's partitions: a process beyond them would idle.
    n = processes or max(1, min(default_processes(), settings.readings_partitions))
    if n == 1:
        from stream_app.worker.start import run_worker

        die_with_parent()  # a supervised child stops with its supervisor
        run_worker(settings, model_version)
        return
    from stream_app.worker.lean_import import import_keras_lean
    from stream_app.worker.preflight import check_services
    from stream_app.worker.start import load_bundles

    import_keras_lean()  # the supervisor loads the models once too
    load_bundles(settings, model_version)  # what would stop every child is one line here, once
    check_services(settings)
    args = (["--model-version", model_version] if model_version else []) + ["--log-format", settings.log_format]
    formatter = JsonLogFormatter(settings.secrets()) if settings.log_format == "json" else None
    code = Supervisor(n, worker_command(*args), base_port=settings.metrics_port, formatter=formatter).run()
    if code:
        raise typer.Exit(code)


@app.command()
def simulate(
    devices: Annotated[int, typer.Option()] = 20,
    rate: Annotated[float, typer.Option(help="readings per second per device")] = 1.0,
    duration: Annotated[float, typer.Option(help="simulated seconds")] = 600.0,
    failures: Annotated[int, typer.Option(help="random failures on distinct devices")] = 0,
    kind: Annotated[Optional[list[str]], typer.Option(help="failure kinds to cycle through")] = None,
    scenario: Annotated[Optional[Path], typer.Option(help="YAML/JSON scenario file (overrides the above)")] = None,
    speed: Annotated[float, typer.Option(help="times real time; 0 = as fast as possible")] = 1.0,
    fast: Annotated[bool, typer.Option("--as-fast-as-possible", "--fast", help="no pacing (the same as --speed 0)")] = False,
    batch: Annotated[int, typer.Option(help="readings per message (batched form) ")] = 1,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Publish a simulated fleet's readings (and failure labels) to Kafka."""
    from producers.fleet import run_simulation, start_ms_for
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
    from stream_app.progress import CountProgress

    speed = 0.0 if fast else speed
    # Played faster than real time, the run starts in the past: no reading is stamped in the future.
    start_ms = start_ms_for(plan.duration_s, speed, int(time.time() * 1000))
    with CountProgress(console, "simulate", "readings") as progress:
        stats, sim = run_simulation(_settings(), plan, start_ms=start_ms, speed=speed, batch=batch, on_progress=progress.update)
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
    fast: Annotated[bool, typer.Option("--as-fast-as-possible", "--fast", help="no pacing (the same as --speed 0)")] = False,
    time_column: Annotated[Optional[str], typer.Option(help="default: the first column")] = None,
    columns: Annotated[Optional[str], typer.Option(help="comma-separated sensor columns")] = None,
    delimiter: Annotated[Optional[str], typer.Option(help="default: sniffed (, ; tab or |)")] = None,
) -> None:
    """Publish a CSV recording to the readings topic as DEVICE."""
    from producers.replay import replay as replay_file

    from stream_app.progress import CountProgress

    cols = [c.strip() for c in columns.split(",")] if columns else None
    with CountProgress(console, "replay", "readings") as progress:
        stats = replay_file(
            _settings(), file, device, speed=0.0 if fast else speed, time_column=time_column, columns=cols,
            delimiter=delimiter, on_progress=progress.update,
        )  # fmt: skip
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
    from stream_app.ops.alert_consumer import follow_alerts

    for alert in follow_alerts(_settings(), from_beginning=from_beginning, max_alerts=max_alerts, idle_s=idle_timeout):
        _print_alert(alert, as_json)


@dlq_app.command("recent")
def dlq_recent(
    count: Annotated[int, typer.Option("--count", "-n", help="how many of the newest letters")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON letter per line")] = False,
) -> None:
    """The newest dead letters: when, key, size, reason (newest first)."""
    from stream_app.ops.dead_letter_reader import recent_letters

    letters = recent_letters(_settings(), count)
    if as_json:
        for letter in letters:
            sys.stdout.write(letter.model_dump_json() + "\n")
        return
    table = Table("when", "key", "size", "reason", "original")
    for letter in letters:
        table.add_row(letter.at, letter.key or "", str(letter.size), letter.reason, letter.preview[:60])
    console.print(table if letters else "no dead letters")


@dlq_app.command("tail")
def dlq_tail(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON letter per line")] = False,
    idle_timeout: Annotated[float, typer.Option(help="stop after S seconds without letters (0 = never)")] = 0.0,
) -> None:
    """Follow the dead-letter topic: each new letter as one line (when, key, size, reason)."""
    from stream_app.ops.dead_letter_reader import follow_letters

    for letter in follow_letters(_settings(), idle_s=idle_timeout):
        if as_json:
            sys.stdout.write(letter.model_dump_json() + "\n")
        else:
            console.print(f"{letter.at}  {letter.key or '-'}  {letter.size} B  {letter.reason}", markup=False, highlight=False)
        sys.stdout.flush()


@app.command("console")
def console_cmd(
    host: Annotated[str, typer.Option(help="address to listen on; other than loopback needs a token")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8642,
    token: Annotated[
        Optional[str], typer.Option(envvar="FLOORWATCH_CONSOLE_TOKEN", help="required of viewers (?token=...)", show_default=False)
    ] = None,
) -> None:
    """The operator's web page: fleet, live alerts, device history, models, dead letters (reads Redis)."""
    from stream_app.console.server import is_loopback, serve

    if not is_loopback(host) and not token:
        raise CliError(f"--host {host} is not loopback: give a token (--token or FLOORWATCH_CONSOLE_TOKEN)")

    def ready(url: str) -> None:
        print(f"console on {url}" + ("  (token required: open it with ?token=...)" if token else ""), flush=True)

    try:
        asyncio.run(serve(_settings(), host, port, token, ready))
    except OSError as exc:
        if exc.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
            raise CliError(f"console port {host}:{port} is in use (choose another with --port)") from exc
        raise


@alerts_app.command("recent")
def alerts_recent(
    device: Annotated[Optional[str], typer.Option(help="only this device")] = None,
    count: Annotated[int, typer.Option(help="how many")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The newest alerts from Redis, newest first."""
    from stream_app.config.redis_client import async_redis

    from stream_app.worker.sinks import recent_alerts

    settings = _settings()

    async def fetch_with_feedback() -> tuple[list, dict[str, dict[str, str]]]:
        from stream_app.worker.feedback import FeedbackStore

        client = async_redis(settings)
        try:
            found = await recent_alerts(client, settings.redis_prefix, device, count)
            return found, await FeedbackStore(client, settings.redis_prefix).for_alerts(found)
        finally:
            await client.aclose()

    alerts, feedback = asyncio.run(fetch_with_feedback())
    if as_json:
        import orjson

        for alert in alerts:
            doc = alert.model_dump(mode="json") | {"feedback": feedback.get(alert.alert_id)}
            sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        return
    # The alert id is what `alerts label` takes; the window end is in --json.
    table = Table("detected", "alert id", "device", "episode", "severity", "score/thr", "top feature", "checks",
                  "model", "feedback")  # fmt: skip
    for a in alerts:
        label = feedback.get(a.alert_id, {})
        table.add_row(
            a.detected_at, a.alert_id, a.device_id, a.episode.state, a.severity, f"{a.score:.2f}/{a.threshold:.2f}",
            a.top_feature, ",".join(a.check_failures), a.model_version,
            (label.get("verdict", "") + (f": {label['note']}" if label.get("note") else "")).replace("_", " "),
        )  # fmt: skip
    console.print(table if alerts else "no alerts")


@alerts_app.command("label")
def alerts_label(
    alert_id: str,
    confirmed: Annotated[bool, typer.Option("--confirmed", help="the alert was a real fault")] = False,
    false_alarm: Annotated[bool, typer.Option("--false-alarm", help="the alert was wrong")] = False,
    note: Annotated[str, typer.Option(help="what was found")] = "",
    by: Annotated[Optional[str], typer.Option(help="who judged it (default: your user name)")] = None,
) -> None:
    """Say whether an alert was right: feeds precision per model version and retraining."""
    from stream_app.config.redis_client import async_redis

    from stream_app.worker.feedback import Feedback, FeedbackStore, UnknownAlert
    from stream_app.models.audit import _who

    if confirmed == false_alarm:
        raise CliError("give exactly one of --confirmed or --false-alarm")
    settings = _settings()
    feedback = Feedback(alert_id=alert_id, verdict="confirmed" if confirmed else "false_alarm", note=note, by=by or _who())

    async def record() -> Alert:
        client = async_redis(settings)
        try:
            return await FeedbackStore(client, settings.redis_prefix).record(feedback)
        finally:
            await client.aclose()

    try:
        alert = asyncio.run(record())
    except UnknownAlert as exc:
        raise CliError(str(exc)) from exc
    console.print(
        f"alert {alert_id} ({alert.device_id}, episode {alert.episode.episode_id}, model {alert.model_version}) "
        f"labelled {feedback.verdict.replace('_', ' ')}"
    )


def _print_alert(alert: Alert, as_json: bool) -> None:
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
    lifecycle: Annotated[bool, typer.Option(help="measure the drift watch and a shadow model on vs off")] = True,
    processes: Annotated[str, typer.Option(help="worker processes (floorwatch worker --processes N) that drain the single-form backlog, comma-separated; 1 is the single-form row; empty skips")] = "1,2",
    broker: Annotated[str, typer.Option(help="end-to-end broker: embedded, or kafka (a local Apache Kafka; FLOORWATCH_KAFKA_TRANSACTIONS=false for no transactions)")] = "embedded",
) -> None:
    """Benchmark: model-only scoring, end-to-end throughput and latency, memory; a table and JSON."""
    from stream_app.lab.bench import BenchConfig, check_processes, print_result, run_bench

    def ints(text: str) -> list[int]:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise CliError(f"expected comma-separated integers, got {text!r}") from exc

    config = BenchConfig(
        batch_sizes=ints(batch_sizes), devices=devices, readings_per_device=readings, batched_form=batched_form,
        latency_rates=[float(r) for r in ints(rates)], latency_seconds=latency_seconds, memory_devices=ints(memory_devices), e2e=e2e, lifecycle=lifecycle,
        processes=ints(processes),
    )  # fmt: skip
    check_processes(config.processes, _settings().readings_partitions)
    if broker not in ("embedded", "kafka"):
        raise CliError(f"--broker must be embedded or kafka, not {broker!r}")
    config.broker = "kafka" if broker == "kafka" else "embedded"
    if broker == "kafka" and e2e:
        from stream_app.lab.kafka_local import kafka_available

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
    csv: Annotated[Optional[list[Path]], typer.Option(help="CSV recording(s), one device each, labelled or not, any delimiter, time format and rate")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="CSV: 0/1 label column (default: `anomaly` where present; a file without labels is scored as all normal)")] = None,
    time_column: Annotated[Optional[str], typer.Option(help="CSV: time column (default: the first)")] = None,
    features: Annotated[Optional[str], typer.Option(help="CSV or SKAB: comma-separated sensor columns (default: all sensors)")] = None,
    train_rows: Annotated[float, typer.Option("--train-rows", "--warmup-rows", help="CSV: learn a model per file on its first N rows (N < 1: that share of each file's rows), then score the rest causally while it keeps learning (0: use the stored model)")] = 0,
    skab: Annotated[Optional[Path], typer.Option(help="SKAB data folder, e.g. ../shared/data/skab (SKAB protocol)")] = None,
    smd: Annotated[Optional[Path], typer.Option(help="SMD data folder, e.g. ../shared/data/smd (a model per machine on its train part)")] = None,
    machines: Annotated[Optional[str], typer.Option(help="SMD: comma-separated machines (default: all in the folder)")] = None,
    detector: Annotated[str, typer.Option(help="lstm (autoencoder) or iforest (IsolationForest baseline)")] = "lstm",
    point_mode: Annotated[str, typer.Option(help="a point is anomalous when its device's episode is open (episode) or its window is over the line (window)")] = "episode",
    train_model: Annotated[bool, typer.Option("--train", help="simulate/csv: train a fresh model instead of the stored one")] = False,
    model_version: Annotated[Optional[str], typer.Option(help="stored model version (default: current)")] = None,
    threshold_method: ThresholdMethodOption = DEFAULT_TRAINING.threshold_method,
    quantile: Annotated[float, typer.Option(help="threshold quantile of validation scores")] = DEFAULT_TRAINING.quantile,
    multiplier: Annotated[float, typer.Option(help="threshold multiplier")] = DEFAULT_TRAINING.multiplier,
    ewma_alpha: EwmaAlphaOption = DEFAULT_TRAINING.ewma_alpha,
    window: Annotated[Optional[int], typer.Option(help=f"window length T (default {DEFAULT_TRAINING.window}; 10 per SKAB file)")] = None,
    units: Annotated[Optional[int], typer.Option(help=f"LSTM units (default {DEFAULT_TRAINING.units}; 8 per SKAB file)")] = None,
    epochs: Annotated[Optional[int], typer.Option(help=f"training epochs (default {DEFAULT_TRAINING.epochs}; 20 per SKAB file)")] = None,
    level_checks: Annotated[bool, typer.Option(help="apply the level envelope check beside the model")] = True,
    max_gap: Annotated[Optional[float], typer.Option(help="window restart after a silence, seconds (default: config; 300 for SKAB)")] = None,
    batch_size: Annotated[int, typer.Option(help="readings per micro-batch")] = 256,
    plot: Annotated[Optional[Path], typer.Option(help="write PNG plots to this folder")] = None,
    detections: Annotated[Optional[Path], typer.Option(help="write per-point rows (score, line, ratio, episode, opened) to this CSV")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Run the worker's detector over labelled data: point-wise and event-wise detection quality."""
    from stream_app.lab.evaluate import run_evaluation, print_report, EvaluateRequest

    if sum([simulate or scenario is not None, bool(csv), skab is not None, smd is not None]) != 1:
        raise CliError("choose one source: --simulate (or --scenario FILE), --csv FILE, --skab DIR or --smd DIR")
    request = EvaluateRequest(
        source="skab" if skab is not None else "smd" if smd is not None else "csv" if csv else "simulate",
        smd=smd, machines=[m.strip() for m in machines.split(",")] if machines else None,
        devices=devices, duration_s=duration, failures=failures, kinds=kind or [], seed=seed, scenario=scenario,
        csv=csv or [], label_column=label_column, time_column=time_column,
        features=[f.strip() for f in features.split(",")] if features else None, train_rows=train_rows,
        skab=skab, detector=detector, point_mode=point_mode, train=train_model, model_version=model_version,
        threshold_method=threshold_method, quantile=quantile, multiplier=multiplier, ewma_alpha=ewma_alpha,
        window=window, units=units, epochs=epochs, level_checks=level_checks, max_gap_s=max_gap, batch_size=batch_size,
    )  # fmt: skip
    from stream_app.progress import CountProgress

    # With --json stdout holds the report alone: progress goes to stderr (a bar only where that is a terminal).
    with CountProgress(Console(stderr=True) if as_json else console, "evaluate", "readings") as progress:
        report, traces = run_evaluation(_settings(), request, on_progress=progress.update, on_stage=progress.stage)
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        print_report(report, console)
    if detections is not None:
        from stream_app.lab.evaluate import write_detections

        rows = write_detections(traces, detections)
        (console if not as_json else Console(stderr=True)).print(f"{rows} detection rows written to {detections}")
    if plot is not None:
        from stream_app.lab.plots import write_plots

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
    from stream_app.lab.demo import run_demo

    ok = run_demo(_settings(), console, devices=devices, duration_s=duration, failures=failures, seed=seed)
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point: known failures become one line on stderr."""
    from confluent_kafka import KafkaException
    from redis.exceptions import RedisError

    from typer.exceptions import TyperException
    failure: tuple[str, int] | None = None
    try:
        app(standalone_mode=False)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)))
    except typer.Abort:
        failure = ("aborted", 130)
    except KeyboardInterrupt:
        sys.exit(130)
    except (FloorwatchError, ValueError) as exc:  # ours, and a value refused (pydantic's ValidationError included)
        failure = (str(exc), 1)
    except (KafkaException, RedisError, OSError) as exc:
        failure = (f"{type(exc).__name__}: {exc}", 1)
    except TyperException as exc:  # usage errors: unknown command, bad option value, ...
        failure = (exc.format_message() if hasattr(exc, "format_message") else str(exc), getattr(exc, "exit_code", 2))
    except Exception as exc:
        failure = (f"unexpected {type(exc).__name__}: {exc}", 1)
    if failure is not None:
        # Out of the except block the exception and its frames are gone; collected now, a Kafka client one of
        # them held is destroyed while the interpreter is whole. Destroyed during its shutdown instead, a
        # librdkafka client could crash the process after the error line (exit -11 instead of 1, SASL_SSL).
        gc.collect()
        _fail(*failure)


def _fail(message: str, code: int = 1) -> None:
    # One line, never wrapped, whatever the terminal width; a secret some library quoted is masked.
    line = "error: " + " ".join(_scrub(message).split())
    if "stream_app.worker.logs" in sys.modules:  # only a worker can have set JSON logs up
        import logging

        from stream_app.worker.logs import json_logs_active

        if json_logs_active():  # `worker --log-format json`: its last line is JSON as well
            logging.getLogger("stream_app.cli").error(line)
            sys.exit(code)
    sys.stderr.write(line + "\n")
    sys.exit(code)


def _scrub(message: str) -> str:
    try:
        secrets = Settings().secrets()
    except Exception:  # the configuration itself is what failed: nothing to scrub with
        return message
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message
