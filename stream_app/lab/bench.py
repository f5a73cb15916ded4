"""``floorwatch bench``: how fast the pipeline is, measured in one run.

1. model-only scoring (the ceiling): windows/s per batch size, one compiled call per batch;
2. end-to-end throughput: one worker process drains a pre-produced backlog on the embedded
   services (single and batched message forms), compared with the ceiling; then the same
   single-form backlog drained by ``floorwatch worker --processes N`` for each N asked for;
3. latency: reading produced -> alert in Redis, at a fixed offered rate;
4. memory: RSS of a detector holding 1k/10k/100k devices' windows (in this process).

It measures; it asserts nothing. Timings on a shared machine are noisy: rerun before comparing.
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from typing import Literal

import numpy as np
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from stream_app.training.autoencoder import flops_per_window
from stream_app.lab.bench_stats import BenchResult, MemoryPoint, ModelRate, ProcessesRate, Throughput, cpu_model, rss_mb
from stream_app.contracts import Reading
from stream_app.models.store import ModelBundle, ModelStore
from stream_app.pipeline.scorer import Scorer, backend_and_device
from stream_app.config.settings import Settings
from stream_app.progress import CountProgress


class BenchConfig(BaseModel):
    batch_sizes: list[int] = [1, 64, 256, 1024, 4096]
    model_seconds: float = 1.0  # per batch size
    e2e: bool = True
    # The end-to-end parts' broker: fresh embedded services, or a one-node local Apache Kafka
    # (kafka profile; FLOORWATCH_KAFKA_TRANSACTIONS turns its transactions off).
    broker: Literal["embedded", "kafka"] = "embedded"
    devices: int = 1000
    readings_per_device: int = 1000
    batched_form: int = 10  # readings per message in the batched run; 0 skips it
    # The target's 10k/s, and one a single-form worker sustains here (see the throughput rows).
    latency_rates: list[float] = [10_000.0, 5_000.0]
    latency_seconds: float = 20.0
    latency_devices: int = 1000
    latency_failing: int = 100
    # Worker processes (``floorwatch worker --processes N``, one consumer group) that drain the
    # single-form backlog, side by side; 1 is the single-form throughput row itself. Empty skips it.
    processes: list[int] = [1, 2]
    memory_devices: list[int] = [1_000, 10_000, 100_000]
    lifecycle: bool = True  # drift watch and a shadow model, on vs off


def check_processes(processes: Sequence[int], partitions: int) -> None:
    """Each N of ``--processes`` is at least 1, and no more than the readings partitions (a process
    beyond them would hold none and drain nothing)."""
    if any(n < 1 for n in processes):
        raise ValueError(f"bench --processes: each count must be 1 or more, got {list(processes)}")
    if processes and max(processes) > partitions:
        raise ValueError(f"bench --processes {max(processes)} needs at least {max(processes)} readings partitions "
                         f"(FLOORWATCH_READINGS_PARTITIONS is {partitions})")  # fmt: skip


def ensure_model(settings: Settings, workdir: Path, log: Callable[[str], None]) -> Path:
    """The configured store if it has a current model, else a default model trained into ``workdir``."""
    if ModelStore(settings.model_dir).current() is not None:
        return settings.model_dir
    from stream_app.training.recipe import train_default

    root = workdir / "models"
    log(f"no model in {settings.model_dir}: training the default model into {root} (about a minute)")
    train_default(ModelStore(root))
    return root


def model_only(bundle: ModelBundle, batch_sizes: Sequence[int], seconds: float = 1.0, seed: int = 0) -> list[ModelRate]:
    """Windows/s of ``Scorer.score`` (scaling, compiled model, error) at exactly each batch size."""
    sizes = sorted(set(batch_sizes))
    scorer = Scorer(
        bundle.load_keras(), bundle.scaler, reference=bundle.thresholds.feature_reference, max_batch=sizes[-1], sizes=sizes
    )
    scorer.warm()
    flops = flops_per_window(scorer.window, scorer.n_features, bundle.card.units)
    rng = np.random.default_rng(seed)
    mean, scale = np.asarray(bundle.scaler.mean, np.float32), np.asarray(bundle.scaler.scale, np.float32)
    out = []
    for size in sizes:
        windows = (mean + scale * rng.standard_normal((size, scorer.window, scorer.n_features))).astype(np.float32)
        scorer.score(windows)  # first call after warm-up may still allocate
        calls, started = 0, time.perf_counter()
        while True:
            scorer.score(windows)
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds and calls >= 3:
                break
        ms, rate = elapsed / calls * 1000, size * calls / elapsed
        out.append(ModelRate(batch=size, ms_per_batch=round(ms, 3), windows_per_s=round(rate, 1), gflop_per_s=round(rate * flops / 1e9, 2)))
    return out


def matmul_ceiling(seconds: float = 1.0, seed: int = 0) -> float:
    """GFLOP/s of a large float32 matrix product on the Keras backend's default device."""
    import keras

    n = 2048 if backend_and_device()[1] == "cpu" else 8192  # big enough to fill the device, small enough to time in a second
    rng = np.random.default_rng(seed)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32))
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32))
    keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])  # warm-up
    calls, started = 0, time.perf_counter()
    while True:
        # Reading one element back waits for the product (JAX and GPUs run asynchronously).
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 3:
            return round(2 * n**3 * calls / elapsed / 1e9, 1)


def memory(bundle: ModelBundle, device_counts: Sequence[int], max_batch: int = 1024) -> list[MemoryPoint]:
    """RSS of this process as one detector holds one full window per device, counts ascending."""
    if not device_counts:
        return []
    from stream_app.pipeline.detector import Detector
    from stream_app.worker.start import detector_config

    scorer = Scorer.from_bundle(bundle, max_batch=max_batch)
    scorer.warm()
    settings = Settings()
    detector = Detector(bundle, scorer, detector_config(settings.detection, settings.episodes))
    features, window = bundle.card.features, bundle.card.window
    mean, scale = np.asarray(bundle.scaler.mean), np.asarray(bundle.scaler.scale)
    rng = np.random.default_rng(0)
    base = rss_mb()
    now = int(time.time() * 1000)
    out, held = [], 0
    for count in sorted(device_counts):
        for start in range(held, count, 10_000):
            ids = [f"mem-{i:07d}" for i in range(start, min(count, start + 10_000))]
            for tick in range(window):
                values = (mean + 0.3 * scale * rng.standard_normal((len(ids), len(features)))).tolist()
                ts = now - (window - tick) * 1000
                # Trusted, generated readings: skip validation, it is not what is measured here.
                readings = [
                    Reading.model_construct(device_id=d, ts=ts, values=dict(zip(features, v))) for d, v in zip(ids, values)
                ]
                detector.process(readings, now_ms=now)
        held = count
        out.append(
            MemoryPoint(
                devices=count,
                rss_mb=round(rss_mb(), 1),
                delta_mb=round(rss_mb() - base, 1),
                window_store_mb=round(detector.windows.nbytes / 2**20, 3),
            )
        )
    return out


def run_bench(settings: Settings, config: BenchConfig, console: Console, *, model_dir: Path | None = None) -> BenchResult:
    def log(message: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")

    def bar(what: str) -> CountProgress:
        # A drain's readings consumed: a bar on a terminal, a plain line every 10 s in a log.
        return CountProgress(console, what, "readings")

    with tempfile.TemporaryDirectory(prefix="floorwatch-bench-") as tmp:
        workdir = Path(tmp)
        root = model_dir or ensure_model(settings, workdir, log)
        settings = settings.model_copy(update={"model_dir": root, "state_dir": workdir / "state"})
        bundle = ModelStore(root).load()
        import keras

        result = BenchResult(
            machine={
                "cpu": cpu_model(),
                "cores": str(_cores()),
                "python": platform.python_version(),
                "keras_backend": keras.backend.backend(),
                "scorer_device": backend_and_device()[1],
                "broker": _broker_label(settings, config.broker),
            },
            settings={k: getattr(settings, k) for k in ("batch_max_size", "batch_max_wait_s", "stride", "kafka_transactions")},
            model={
                "version": bundle.version,
                "window": bundle.card.window,
                "units": bundle.card.units,
                "features": len(bundle.card.features),
                "flops_per_window": flops_per_window(bundle.card.window, len(bundle.card.features), bundle.card.units),
            },
            notes=["shared 2-core machine: figures vary by tens of percent between runs"],
        )
        log(f"model-only scoring, batch sizes {config.batch_sizes}")
        result.model_only = model_only(bundle, config.batch_sizes, config.model_seconds)
        log("arithmetic ceiling: a large float32 matrix product")
        result.matmul_gflop_per_s = matmul_ceiling(config.model_seconds)
        if config.memory_devices:
            log("memory: detector holding 1 window per device")
        result.memory = memory(bundle, config.memory_devices, settings.batch_max_size)
        if config.lifecycle:
            from stream_app.lab.bench_lifecycle import builder, lifecycle_overhead

            log("lifecycle: the batch path plain, with the drift watch, with the drift watch and a shadow model")
            rates = lifecycle_overhead(bundle, builder(settings.batch_max_size), batch=settings.batch_max_size)
            result.lifecycle = [r.model_dump() for r in rates]
            from stream_app.lab.bench_lifecycle import swap_timing

            log("hot reload: batch times while a new version loads, compiles and warms on a thread, and after its install")
            result.swap = [swap_timing(bundle, max_batch=settings.batch_max_size, new_architecture=new).model_dump()
                           for new in (False, True)]  # fmt: skip
        if config.e2e:
            _end_to_end(settings, config, result, workdir, log, bar)
        return result


def _end_to_end(
    settings: Settings, config: BenchConfig, result: BenchResult, workdir: Path, log: Callable[[str], None],
    bar: Callable[[str], CountProgress],
) -> None:  # fmt: skip
    from stream_app.lab.bench_e2e import drain, measure_latency, phase_settings, produce_backlog
    from stream_app.lab.harness import WorkerProcess, fresh_services

    ceiling = {r.batch: r.windows_per_s for r in result.model_only}
    ceiling_batch = min(ceiling, key=lambda b: abs(b - settings.batch_max_size))
    with fresh_services(settings, workdir / "services", broker=config.broker) as live:
        forms = [1] + ([config.batched_form] if config.batched_form > 1 else [])
        for form in forms:
            name = "single" if form == 1 else f"batched{form}"
            s = phase_settings(live, name)
            log(f"throughput ({name}): producing {config.devices} devices x {config.readings_per_device} readings")
            total, messages = produce_backlog(s, config.devices, config.readings_per_device, form)
            with WorkerProcess(s, workdir / "logs" / f"worker-{name}.log") as worker:
                log(f"throughput ({name}): worker draining {total} readings in {messages} messages")
                with bar(f"draining ({name})") as progress:
                    seconds, rate, metrics = drain(worker, total, timeout_s=600, on_progress=progress.update)
                windows = int(metrics.get("floorwatch_windows_scored_total", 0))
                batches = metrics.get("floorwatch_batch_windows_count", 0.0) or 1.0
                result.throughput.append(
                    Throughput(
                        form="single" if form == 1 else f"batched:{form}",
                        readings=total,
                        messages=messages,
                        seconds=round(seconds, 2),
                        readings_per_s=round(rate, 1),
                        windows_scored=windows,
                        mean_windows_per_batch=round(metrics.get("floorwatch_batch_windows_sum", 0.0) / batches, 1),
                        ceiling_batch=ceiling_batch,
                        ceiling_windows_per_s=ceiling[ceiling_batch],
                        # windows/s vs the ceiling; at stride 1 a warm device scores one window per reading
                        ratio_to_ceiling=round(rate * windows / total / ceiling[ceiling_batch], 3),
                        worker_rss_mb=round(worker.rss_mb(), 1),
                        consumer_stalls=int(metrics.get("floorwatch_consumer_stalls_total", 0.0)),
                    )
                )
        if config.processes:
            _processes(live, config, result, workdir, log, bar)
        for rate in config.latency_rates:
            s = phase_settings(live, f"latency{rate:.0f}")
            with WorkerProcess(s, workdir / "logs" / f"worker-latency{rate:.0f}.log") as worker:
                worker.wait_ready()
                time.sleep(3.0)  # the consumer group join
                log(f"latency: {rate:.0f} readings/s for {config.latency_seconds:.0f}s")
                result.latency.append(
                    measure_latency(
                        s,
                        worker,
                        rate=rate,
                        devices=config.latency_devices,
                        seconds=config.latency_seconds,
                        failing=config.latency_failing,
                    )
                )


def _processes(
    live: Settings, config: BenchConfig, result: BenchResult, workdir: Path, log: Callable[[str], None],
    bar: Callable[[str], CountProgress],
) -> None:  # fmt: skip
    """The single-form backlog drained by ``floorwatch worker --processes N`` for each N (one process:
    the single-form row already measured), and each N's speed against one process's."""
    from stream_app.lab.bench_e2e import drain_processes, phase_settings, produce_backlog
    from stream_app.lab.harness import WorkerProcess

    one = next((t for t in result.throughput if t.form == "single"), None)
    rows: list[ProcessesRate] = []
    for n in sorted(set(config.processes)):
        if n == 1 and one is not None:
            rows.append(ProcessesRate(
                processes=1, readings=one.readings, seconds=one.seconds, readings_per_s=one.readings_per_s,
                all_consuming_readings_per_s=one.readings_per_s, per_process=[one.readings], worker_rss_mb=one.worker_rss_mb,
                consumer_stalls=one.consumer_stalls, note="the single-form throughput row",
            ))  # fmt: skip
            continue
        s = phase_settings(live, f"processes{n}")
        log(f"throughput (--processes {n}): producing {config.devices} devices x {config.readings_per_device} readings")
        total, _ = produce_backlog(s, config.devices, config.readings_per_device, 1)
        with WorkerProcess(s, workdir / "logs" / f"worker-processes{n}.log", processes=n) as worker:
            log(f"throughput (--processes {n}): {n} worker processes draining {total} readings "
                f"from {s.readings_partitions} partitions")  # fmt: skip
            with bar(f"draining (--processes {n})") as progress:
                seconds, rate, settled, per_process, stalls = drain_processes(worker, total, timeout_s=600, on_progress=progress.update)
            rss = worker.rss_mb()
        rows.append(ProcessesRate(
            processes=n, readings=total, seconds=round(seconds, 2), readings_per_s=round(rate, 1),
            all_consuming_readings_per_s=None if settled is None else round(settled, 1), per_process=per_process,
            worker_rss_mb=round(rss, 1), consumer_stalls=stalls,
        ))  # fmt: skip
    base = next((r.readings_per_s for r in rows if r.processes == 1), None)
    for row in rows:
        row.speedup = round(row.readings_per_s / base, 2) if base else None
    result.processes = rows


def _broker_label(settings: Settings, broker: str) -> str:
    if broker == "embedded":
        return "embedded (Tansu, memory storage)"
    return f"Apache Kafka, 1 node, transactions {'on' if settings.kafka_transactions else 'off'}"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def print_result(result: BenchResult, console: Console) -> None:
    m = result.machine
    device = m.get("scorer_device", "cpu")
    console.print(
        f"[bold]floorwatch bench[/] on {m['cpu']} ({m['cores']} cores), Keras backend {m['keras_backend']}, scoring on {device}"
        + (f", broker: {m['broker']}" if "broker" in m else "")
    )
    ceiling = result.matmul_gflop_per_s
    table = Table(
        title="Model-only scoring (the ceiling)",
        caption=f"{result.model.get('flops_per_window')} FLOPs per window; float32 matrix product: {ceiling or 0:,.0f} GFLOP/s",
    )
    for col in ("batch", "ms/batch", "windows/s", "GFLOP/s", "share of matmul"):
        table.add_column(col, justify="right")
    for r in result.model_only:
        share = f"{r.gflop_per_s / ceiling:.2%}" if ceiling and r.gflop_per_s is not None else "-"
        table.add_row(str(r.batch), f"{r.ms_per_batch:.2f}", f"{r.windows_per_s:,.0f}", f"{r.gflop_per_s or 0:,.1f}", share)
    console.print(table)
    if result.throughput:
        table = Table(title="End-to-end throughput (one worker, backlog drained)")
        for col in ("form", "readings", "messages", "seconds", "readings/s", "windows/batch", "x ceiling", "worker RSS MB"):
            table.add_column(col, justify="right")
        for t in result.throughput:
            table.add_row(
                t.form, f"{t.readings:,}", f"{t.messages:,}", f"{t.seconds:.1f}", f"{t.readings_per_s:,.0f}",
                f"{t.mean_windows_per_batch:.0f}", f"{t.ratio_to_ceiling:.2f} (of {t.ceiling_windows_per_s:,.0f} @ {t.ceiling_batch})",
                f"{t.worker_rss_mb or 0:.0f}",
            )  # fmt: skip
        console.print(table)
    if result.processes:
        print_processes(result.processes, console)
    if result.latency:
        table = Table(title="Reading -> alert in Redis latency")
        for col in ("offered/s", "achieved/s", "consumed", "alerts", "p50 ms", "p95 ms", "p99 ms", "max ms", "stalls"):
            table.add_column(col, justify="right")
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        for lat in result.latency:
            s = lat.summary
            table.add_row(
                f"{lat.offered_per_s:,.0f}", f"{lat.achieved_per_s:,.0f}", f"{lat.consumed:,}/{lat.readings:,}",
                f"{lat.matched}/{lat.alerts}", fmt(s.p50_ms), fmt(s.p95_ms), fmt(s.p99_ms), fmt(s.max_ms),
                str(lat.stalls),
            )  # fmt: skip
        console.print(table)
        table = Table(title="Where the latency runs' batches spent their time (floorwatch_batch_stage_seconds, ms a batch)")
        for col in ("offered/s", "stage", "batches", "mean", "p50", "p99"):
            table.add_column(col, justify="right")
        for lat in result.latency:
            for st in lat.stages:
                table.add_row(f"{lat.offered_per_s:,.0f}", st.stage, f"{st.batches:,}", f"{st.mean_ms:.2f}", fmt(st.p50_ms), fmt(st.p99_ms))
        console.print(table)
    if result.lifecycle:
        table = Table(title="Lifecycle cost on the batch path (in process, no Kafka/Redis; each step timed, median of 3 passes)")
        for col in ("configuration", "readings", "seconds", "readings/s", "overhead"):
            table.add_column(col, justify="right")
        for row in result.lifecycle:
            table.add_row(str(row["config"]), f"{row['readings']:,}", f"{row['seconds']:.2f}", f"{row['readings_per_s']:,.0f}",
                          f"{float(row['overhead']):+.1%}")  # fmt: skip
        console.print(table)
    if result.swap:
        table = Table(title="Hot reload: batch times while a version loads, compiles and warms on a thread, and after its install")
        for col in ("version built", "build s (load, scorer, warm)", "phase", "batches", "p50 ms", "p99 ms", "max ms"):
            table.add_column(col, justify="right")
        for w in result.swap:
            kind = "new architecture" if w["new_architecture"] else "same architecture"
            parts = ", ".join(f"{v:.2f}" for v in w["parts"].values())
            table.add_row(kind, f"{w['build_seconds']:.2f} ({parts})", "normal", str(w["batches_normal"]),
                          f"{w['p50_ms_normal']:.1f}", f"{w['p99_ms_normal']:.1f}", "")  # fmt: skip
            table.add_row("", "", "during the build", str(w["batches_during_build"]), f"{w['p50_ms_during_build']:.1f}",
                          f"{w['p99_ms_during_build']:.1f}", f"{w['max_ms_during_build']:.1f}")  # fmt: skip
            table.add_row("", "", "after the install", str(w["batches_after_install"]), "", f"{w['p99_ms_after_install']:.1f}", "")
            table.add_row("", "", "swap / normal p99", "", "", f"{w['p99_ratio']:.2f}x", "")
        console.print(table)
    if result.memory:
        table = Table(title="Memory: detector holding one window per device")
        for col in ("devices", "RSS MB", "+MB over empty detector", "window arrays MB"):
            table.add_column(col, justify="right")
        for p in result.memory:
            table.add_row(f"{p.devices:,}", f"{p.rss_mb:.0f}", f"{p.delta_mb:.1f}", f"{p.window_store_mb:.1f}")
        console.print(table)


def print_processes(rows: Sequence[ProcessesRate], console: Console) -> None:
    """The ``--processes N`` rows side by side: readings/s and against one process."""
    table = Table(
        title="End-to-end throughput by worker processes (floorwatch worker --processes N, single form, one consumer group)",
        caption="readings/s from the first reading consumed (rebalances included); 'all consuming': from the moment "
        "every process had read one; stalls: partitions found stalled (their recovery, not the CPU, then sets the speed)",
    )
    for col in ("processes", "readings", "seconds", "readings/s", "x one process", "all consuming/s", "per process", "stalls", "RSS MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r.processes), f"{r.readings:,}", f"{r.seconds:.1f}", f"{r.readings_per_s:,.0f}",
            "-" if r.speedup is None else f"{r.speedup:.2f}",
            "-" if r.all_consuming_readings_per_s is None else f"{r.all_consuming_readings_per_s:,.0f}",
            " + ".join(f"{c:,}" for c in r.per_process), "-" if r.consumer_stalls is None else str(r.consumer_stalls),
            f"{r.worker_rss_mb or 0:.0f}",
        )  # fmt: skip
    console.print(table)
