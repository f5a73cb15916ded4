"""The benchmark's pure parts and its in-process measurements at tiny sizes (no timing asserted)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from prometheus_client import generate_latest

from stream_app.lab.bench_stats import LatencySummary, drain_rate, prometheus_values, rss_mb, stage_times, summarize
from stream_app.worker.metrics import Metrics


def test_summarize_percentiles() -> None:
    s = summarize(list(range(1, 101)))
    assert s.count == 100
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.max_ms == 100 and s.mean_ms == pytest.approx(50.5)


def test_summarize_empty() -> None:
    assert summarize([]) == LatencySummary(count=0)


def test_drain_rate_starts_at_first_activity() -> None:
    samples = [(0.0, 0), (1.0, 0), (2.0, 100), (3.0, 600), (4.0, 1100)]
    seconds, rate = drain_rate(samples, 1100)
    assert seconds == 2.0 and rate == 500.0


def test_drain_rate_unfinished_is_zero() -> None:
    assert drain_rate([(0.0, 0), (1.0, 10)], 100) == (0.0, 0.0)


def test_prometheus_values_sums_labels() -> None:
    text = (
        "# TYPE floorwatch_readings_total counter\nfloorwatch_readings_total 42.0\n"
        "# TYPE floorwatch_alerts_total counter\n"
        'floorwatch_alerts_total{state="open"} 2.0\nfloorwatch_alerts_total{state="closed"} 1.0\n'
    )
    values = prometheus_values(text)
    assert values["floorwatch_readings_total"] == 42.0
    assert values["floorwatch_alerts_total"] == 3.0


def test_stage_times_count_only_the_batches_between_two_scrapes() -> None:
    metrics = Metrics()
    decode = metrics.stage_seconds.labels("decode")
    decode.observe(2.0)  # before the run: not counted
    before = generate_latest(metrics.registry).decode()
    for seconds in [0.003] * 98 + [0.045, 0.045]:
        decode.observe(seconds)
    metrics.stage_seconds.labels("commit").observe(0.0015)
    after = generate_latest(metrics.registry).decode()

    stages = {s.stage: s for s in stage_times([before], [after])}
    assert set(stages) == {"decode", "commit"}  # stages with no batch in the run are left out
    d = stages["decode"]
    assert d.batches == 100 and d.mean_ms == pytest.approx(3.84)
    assert d.p50_ms is not None and 2.0 <= d.p50_ms <= 5.0  # within the 2-5 ms bucket
    assert d.p99_ms is not None and 40.0 <= d.p99_ms <= 50.0
    assert stage_times([after, after], [after, after]) == []  # two processes' pages, nothing new


def test_rss_of_this_process() -> None:
    assert rss_mb() > 1.0


def test_model_only_and_memory_tiny(tiny_model_dir: Path) -> None:
    from stream_app.lab.bench import memory, model_only
    from stream_app.models.store import ModelStore
    from stream_app.training.autoencoder import flops_per_window

    bundle = ModelStore(tiny_model_dir).load()
    rates = model_only(bundle, [4, 1], seconds=0.01)
    assert [r.batch for r in rates] == [1, 4]
    assert all(r.windows_per_s > 0 and math.isfinite(r.ms_per_batch) for r in rates)
    # GFLOP/s is windows/s times the model's FLOPs (not a timing: a loaded machine may round it to 0.0).
    flops = flops_per_window(bundle.card.window, len(bundle.card.features), bundle.card.units)
    assert all(r.gflop_per_s == pytest.approx(r.windows_per_s * flops / 1e9, abs=0.006) for r in rates)

    points = memory(bundle, [20, 5], max_batch=8)
    assert [p.devices for p in points] == [5, 20]
    assert all(p.rss_mb > 0 and p.window_store_mb > 0 for p in points)
    assert points[1].window_store_mb >= points[0].window_store_mb  # the window arrays never shrink


def test_flops_per_window_counts_every_kernel_weight_once_per_step(tiny_model_dir: Path) -> None:
    # Each step multiplies by every kernel (LSTM input and recurrent kernels, the dense kernel) once:
    # one multiply-add per weight, 2 FLOPs. Counted from the built model, independently of the formula.
    from stream_app.training.autoencoder import build_autoencoder, flops_per_window

    model = build_autoencoder(window=16, n_features=4, units=16)
    kernel_weights = sum(int(v.numpy().size) for v in model.weights if "kernel" in v.path)
    assert flops_per_window(16, 4, 16) == 2 * 16 * kernel_weights == 108_544
    assert flops_per_window(10, 8, 8) == 2 * 10 * (4 * 8 * (8 + 8) + 4 * 8 * (8 + 8) + 8 * 8)


def test_matmul_ceiling_is_positive() -> None:
    from stream_app.lab.bench import matmul_ceiling

    assert matmul_ceiling(seconds=0.0) > 0


def test_result_table_shows_every_latency_rate() -> None:
    from rich.console import Console

    from stream_app.lab.bench import print_result
    from stream_app.lab.bench_stats import BenchResult, Latency

    def run(rate: float, p99: float) -> Latency:
        return Latency(
            offered_per_s=rate, achieved_per_s=rate, devices=10, seconds=1.0, readings=int(rate), consumed=int(rate),
            alerts=2, matched=2, summary=summarize([p99 / 2, p99]),
        )  # fmt: skip

    result = BenchResult(
        machine={"cpu": "test", "cores": "2", "python": "3.11", "keras_backend": "tensorflow"},
        settings={}, model={}, latency=[run(10_000, 900.0), run(5_000, 40.0)],
    )  # fmt: skip
    console = Console(record=True, width=200)
    print_result(result, console)
    text = console.export_text()
    assert "10,000" in text and "5,000" in text and "900.0" in text and "40.0" in text
    assert BenchResult.model_validate_json(result.model_dump_json()) == result


def test_processes_rates_from_per_process_counters() -> None:
    from stream_app.lab.bench_stats import processes_rates

    # Process 0 starts alone at t=1; process 1 joins at t=3 (the group settled); both done at t=5.
    samples = [(0.0, [0, 0]), (1.0, [100, 0]), (2.0, [300, 0]), (3.0, [400, 100]), (4.0, [700, 400]), (5.0, [1000, 600])]
    seconds, rate, settled = processes_rates(samples, 1600)
    assert (seconds, rate) == (4.0, 375.0)  # (1600 - 100) / (5 - 1): from the first activity
    assert settled == 550.0  # (1600 - 500) / (5 - 3): from the first sample where both had read
    # One process never read anything: no settled rate; one process alone is its own settled rate.
    assert processes_rates([(0.0, [10, 0]), (1.0, [110, 0])], 110)[2] is None
    assert processes_rates([(0.0, [10]), (2.0, [110])], 110) == (2.0, 50.0, 50.0)
    assert processes_rates([(0.0, [10, 5])], 100) == (0.0, 0.0, None)  # never drained


def test_check_processes_against_partitions() -> None:
    from stream_app.lab.bench import check_processes

    check_processes([1, 2], 8)
    check_processes([], 1)
    with pytest.raises(ValueError, match=r"--processes 4 needs at least 4 readings partitions \(FLOORWATCH_READINGS_PARTITIONS is 2\)"):
        check_processes([1, 4], 2)
    with pytest.raises(ValueError, match="1 or more"):
        check_processes([0, 2], 8)


def test_processes_rows_side_by_side_in_the_table_and_json() -> None:
    from rich.console import Console

    from stream_app.lab.bench import print_result
    from stream_app.lab.bench_stats import BenchResult, ProcessesRate

    rows = [
        ProcessesRate(processes=1, readings=300_000, seconds=30.0, readings_per_s=10_000.0, all_consuming_readings_per_s=10_000.0,
                      speedup=1.0, per_process=[300_000], worker_rss_mb=800.0, note="the single-form throughput row"),
        ProcessesRate(processes=2, readings=300_000, seconds=18.0, readings_per_s=16_666.7, all_consuming_readings_per_s=17_500.0,
                      speedup=1.67, per_process=[150_100, 149_900], worker_rss_mb=1650.0, consumer_stalls=3),
    ]  # fmt: skip
    result = BenchResult(machine={"cpu": "test", "cores": "2", "python": "3.11", "keras_backend": "tensorflow"},
                         settings={}, model={}, processes=rows)  # fmt: skip
    console = Console(record=True, width=250)
    print_result(result, console)
    text = console.export_text()
    assert "│      3 │" in text  # the stalls column
    assert "--processes N" in text and "16,667" in text and "1.67" in text and "150,100 + 149,900" in text and "17,500" in text
    assert BenchResult.model_validate_json(result.model_dump_json()).processes == rows


def test_bench_processes_option_is_parsed_and_checked(tmp_path: Path) -> None:
    # The option's parsing and its check run before anything is measured: one line, no bench.
    import os
    import subprocess
    import sys

    env = {**os.environ, "FLOORWATCH_READINGS_PARTITIONS": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    for value, message in (("1,x", "expected comma-separated integers, got '1,x'"), ("1,4", "needs at least 4 readings partitions")):
        done = subprocess.run([sys.executable, "-m", "stream_app", "bench", "--processes", value, "--out", str(tmp_path / "b.json")],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 1 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
