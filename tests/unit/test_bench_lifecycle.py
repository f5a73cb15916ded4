"""The lifecycle part of `floorwatch bench` runs and reports each configuration (it asserts no speed)."""

from __future__ import annotations

from pathlib import Path


def test_lifecycle_overhead_reports_each_configuration(tiny_model_dir: Path) -> None:
    from stream_app.lab.bench_lifecycle import builder, lifecycle_overhead
    from stream_app.models.store import ModelStore

    bundle = ModelStore(tiny_model_dir).load()
    rates = lifecycle_overhead(bundle, builder(64), devices=20, per_device=12, batch=64, rounds=1)
    assert [r.config for r in rates] == ["plain", "drift watch", "drift watch + shadow model", "adaptation off"]
    assert all(r.readings == 240 and r.readings_per_s > 0 for r in rates)
    assert rates[0].overhead == 0.0


def test_swap_timing_scores_while_the_new_version_compiles(tiny_model_dir: Path) -> None:
    from stream_app.lab.bench_lifecycle import swap_timing
    from stream_app.models.store import ModelStore

    timing = swap_timing(ModelStore(tiny_model_dir).load(), max_batch=64, devices=20, normal_batches=5)
    assert timing.batches_normal == 5 and timing.batches_during_build >= 1 and timing.build_seconds > 0


def test_swap_timing_of_the_same_and_a_new_architecture_is_reported(tiny_model_dir: Path) -> None:
    from rich.console import Console

    from stream_app.lab.bench import print_result
    from stream_app.lab.bench_lifecycle import swap_timing
    from stream_app.lab.bench_stats import BenchResult
    from stream_app.models.store import ModelStore

    bundle = ModelStore(tiny_model_dir).load()
    rows = [swap_timing(bundle, max_batch=64, devices=20, normal_batches=5, after_batches=3, new_architecture=new) for new in (False, True)]
    assert [r.new_architecture for r in rows] == [False, True]
    assert all(set(r.parts) == {"load", "scorer", "warm"} and r.batches_after_install == 3 and r.p99_ratio > 0 for r in rows)
    machine = {"cpu": "test", "cores": "2", "python": "3.11", "keras_backend": "tensorflow"}
    result = BenchResult(machine=machine, settings={}, model={}, swap=[r.model_dump() for r in rows])
    console = Console(record=True, width=200)
    print_result(result, console)
    text = console.export_text()
    assert "same architecture" in text and "new architecture" in text and "swap / normal p99" in text
