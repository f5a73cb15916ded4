"""Pure helpers of the benchmark: result records, percentiles, rates, Prometheus and /proc parsing."""

from __future__ import annotations

from typing import Any

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel


class LatencySummary(BaseModel):
    """Percentiles of a latency sample, in milliseconds."""

    count: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None


class ModelRate(BaseModel):
    """Model-only scoring speed at one batch size."""

    batch: int
    ms_per_batch: float
    windows_per_s: float
    gflop_per_s: float | None = None  # windows/s x the model's FLOPs per window


class Throughput(BaseModel):
    """End-to-end drain rate of a pre-produced backlog by one worker."""

    form: str  # "single" or "batched:<n>"
    readings: int
    messages: int
    seconds: float
    readings_per_s: float
    windows_scored: int
    mean_windows_per_batch: float
    ceiling_batch: int
    ceiling_windows_per_s: float
    ratio_to_ceiling: float
    worker_rss_mb: float | None = None
    consumer_stalls: int | None = None  # as in ProcessesRate


class ProcessesRate(BaseModel):
    """End-to-end drain rate of one backlog by ``floorwatch worker --processes N`` (one consumer group)."""

    processes: int
    readings: int
    seconds: float
    readings_per_s: float  # first reading consumed -> backlog drained, rebalances included
    # From the moment every process had consumed a reading (the group settled) to the end; None when
    # one never did (a process that got no partition, or a backlog drained before the last one joined).
    all_consuming_readings_per_s: float | None = None
    speedup: float | None = None  # readings_per_s / the one-process row's
    per_process: list[int] = []  # readings each process consumed
    worker_rss_mb: float | None = None  # supervisor and children together
    # Partitions the workers found stalled (floorwatch_consumer_stalls_total, summed): on the embedded
    # broker a stall's recovery can dominate a drain (stall.py), so a row with stalls is no speed figure.
    consumer_stalls: int | None = None
    note: str = ""


class StageTime(BaseModel):
    """One stage of the worker's micro-batches (floorwatch_batch_stage_seconds) over a run: per batch,
    in milliseconds; percentiles interpolated within the histogram's buckets (as PromQL does)."""

    stage: str
    batches: int
    mean_ms: float
    p50_ms: float | None = None
    p99_ms: float | None = None


class Latency(BaseModel):
    """Reading-produced to alert-in-Redis latency at a fixed offered rate."""

    offered_per_s: float
    achieved_per_s: float
    devices: int
    seconds: float
    readings: int
    consumed: int
    alerts: int
    matched: int
    summary: LatencySummary
    # Where the worker's batches spent their time during the run (floorwatch_batch_stage_seconds).
    stages: list[StageTime] = []
    # Readings partitions the worker found stalled (each stall lengthens its fetch wait: consume.py).
    stalls: int = 0


class MemoryPoint(BaseModel):
    devices: int
    rss_mb: float
    delta_mb: float
    window_store_mb: float


class BenchResult(BaseModel):
    machine: dict[str, str]
    settings: dict[str, object]
    model: dict[str, object]
    model_only: list[ModelRate] = []
    # A large float32 matrix product on the scorer's backend and device: the arithmetic ceiling the
    # model-only rows are set against (same precision settings as the model's own matrix products).
    matmul_gflop_per_s: float | None = None
    throughput: list[Throughput] = []
    # The single-form backlog drained by 1, 2, ... worker processes (``--processes N``), side by side.
    processes: list[ProcessesRate] = []
    latency: list[Latency] = []
    memory: list[MemoryPoint] = []
    # The drift watch's and a shadow model's cost on the batch path (bench_lifecycle.py).
    lifecycle: list[dict[str, Any]] = []  # LifecycleRate.model_dump() rows
    # Hot reload: batch times during a swap, same architecture (compiled graph reused) and a new one.
    swap: list[dict[str, Any]] = []  # SwapTiming.model_dump() rows
    notes: list[str] = []


def summarize(latencies_ms: Sequence[float]) -> LatencySummary:
    """p50/p95/p99/max/mean of a sample; all None when it is empty."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        return LatencySummary(count=0)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return LatencySummary(
        count=int(values.size),
        p50_ms=round(float(p50), 2),
        p95_ms=round(float(p95), 2),
        p99_ms=round(float(p99), 2),
        max_ms=round(float(values.max()), 2),
        mean_ms=round(float(values.mean()), 2),
    )


def drain_rate(samples: Sequence[tuple[float, float]], total: float) -> tuple[float, float]:
    """(seconds, items/s) from a monotonic counter sampled as (time, count), first activity to ``total``.

    The clock starts at the first sample with a non-zero count and the items counted before it
    are excluded, so a slow start-up is not charged to the steady state.
    """
    started = next(((t, c) for t, c in samples if c > 0), None)
    done = next((t for t, c in samples if c >= total), None)
    if started is None or done is None or done <= started[0]:
        return 0.0, 0.0
    seconds = done - started[0]
    return seconds, (total - started[1]) / seconds


def processes_rates(samples: Sequence[tuple[float, Sequence[float]]], total: float) -> tuple[float, float, float | None]:
    """(seconds, items/s, items/s once all were consuming) from per-process counters sampled as
    (time, [count of each process]), until their sum reaches ``total``.

    The first two are ``drain_rate`` of the sums. The third starts at the first sample where every
    process has counted something (the consumer group has settled, every member holds partitions),
    and is None when no such sample comes before the end.
    """
    sums = [(t, float(sum(counts))) for t, counts in samples]
    seconds, rate = drain_rate(sums, total)
    done = next((t for t, c in sums if c >= total), None)
    settled = next(((t, c) for (t, counts), (_, c) in zip(samples, sums) if counts and all(x > 0 for x in counts)), None)
    if done is None or settled is None or done <= settled[0]:
        return seconds, rate, None
    return seconds, rate, (total - settled[1]) / (done - settled[0])


def prometheus_values(text: str) -> dict[str, float]:
    """Sample name -> value from a Prometheus text page (labelled samples summed by name)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def stage_times(before: Sequence[str], after: Sequence[str], metric: str = "floorwatch_batch_stage_seconds") -> list[StageTime]:
    """Each stage's batches between two scrapes of the worker's Prometheus pages (summed over processes)."""
    start, end = _stage_histograms(before, metric), _stage_histograms(after, metric)
    out = []
    for stage, (buckets, count, total) in end.items():
        b0, c0, t0 = start.get(stage, ({}, 0.0, 0.0))
        n = count - c0
        if n <= 0:
            continue
        cumulative = sorted((le, value - b0.get(le, 0.0)) for le, value in buckets.items())
        out.append(
            StageTime(
                stage=stage, batches=int(n), mean_ms=round((total - t0) / n * 1000, 2),
                p50_ms=_bucket_quantile(cumulative, 0.5), p99_ms=_bucket_quantile(cumulative, 0.99),
            )  # fmt: skip
        )
    return out


def _stage_histograms(pages: Sequence[str], metric: str) -> dict[str, tuple[dict[float, float], float, float]]:
    """stage -> (cumulative bucket counts by upper bound, count, sum)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, tuple[dict[float, float], float, float]] = {}
    for page in pages:
        for family in text_string_to_metric_families(page):
            if family.name != metric:
                continue
            for sample in family.samples:
                stage = sample.labels.get("stage", "")
                buckets, count, total = out.get(stage, ({}, 0.0, 0.0))
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
                elif sample.name.endswith("_count"):
                    count += sample.value
                elif sample.name.endswith("_sum"):
                    total += sample.value
                out[stage] = (buckets, count, total)
    return out


def _bucket_quantile(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile in ms from cumulative (upper bound, count) pairs, linear within a bucket."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in cumulative:
        if count >= rank:
            if upper == float("inf"):
                return round(lower * 1000, 2)  # past the last bound: its lower edge, as PromQL
            share = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (upper - lower) * share) * 1000, 2)
        lower, below = upper, count
    return None


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise ValueError(f"no VmRSS for process {pid}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
