"""Bursty, heavy-tailed system streams: ``timestamp,value,label`` CSVs of the kinds servers and networks send.

    python -m producers.system_streams OUT_DIR --files 12 --seed 41

``producers.streams`` writes machine-like signals (a level, Gaussian noise, cycles, drift) that return to
normal. Real system streams are shaped otherwise, and a detector tuned on the first must not fall over on
these. Each file is one of six kinds, sampled every 1-10 minutes, 3,000-6,000 rows:

- ``requests``: request counts (Poisson) on a daily cycle, with unlabelled bursts of 2-6 readings at 2-3x;
- ``sparse``: sparse event counts, mostly 0, arriving in clusters;
- ``bytes``: byte rates with a log-normal, heavy right tail;
- ``cpu``: CPU % around a low level, with unlabelled spikes to 70-100% that last 1-3 readings;
- ``heavy``: a level with Student-t (3 degrees of freedom) noise;
- ``latency``: response times (gamma) with unlabelled slow outliers.

Labelled anomalies, 1-2 a file after its first 15% (NAB's probationary share), fit the kind: a ``surge``
(4-6x for 5-30 readings), a ``drop`` (an outage: near zero for 10-60 readings), a lasting ``shift`` of the
level (30-150 readings), ``pegged`` CPU (95-100% for 20-100 readings) and ``slow`` responses (3x for 20-60
readings). The benign bursts, spikes and outliers are what makes these files hard: each looks like a
fault to a detector that has not learnt how the stream is. Seeded and deterministic. ``streams.json`` in
OUT_DIR lists each file's kind and labelled spans.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from producers.streams import START, Anomaly, write_set

KINDS = ("requests", "sparse", "bytes", "cpu", "heavy", "latency")
ANOMALY_KINDS = {  # the faults each kind of stream has
    "requests": ("surge", "drop", "shift"),
    "sparse": ("surge", "shift"),
    "bytes": ("surge", "drop", "shift"),
    "cpu": ("pegged", "shift"),
    "heavy": ("shift", "surge"),
    "latency": ("slow", "shift"),
}
INTERVALS_S = (60, 120, 300, 600)
_DAY_S = 86_400


class SystemStreamSpec(BaseModel):
    """What one generated stream holds (written to ``streams.json``)."""

    file: str
    kind: str
    interval_s: int
    rows: int
    level: float
    benign_events: int  # unlabelled bursts, spikes or outliers
    anomalies: list[Anomaly]


def _daily(t: np.ndarray, amplitude: float) -> np.ndarray:
    return 1.0 + amplitude * np.sin(2 * math.pi * ((t % _DAY_S) / 3600 - 9) / 24)


def generate(index: int, rng: np.random.Generator) -> tuple[SystemStreamSpec, np.ndarray, np.ndarray, np.ndarray]:
    """One stream: its spec, epoch-second times, values and labels."""
    kind = str(rng.choice(KINDS))
    interval = int(rng.choice(INTERVALS_S))
    rows = int(rng.integers(3000, 6001))
    t = START.timestamp() + np.arange(rows, dtype=np.float64) * interval
    benign = np.zeros(rows, bool)
    if kind == "requests":
        level = float(rng.uniform(20, 400))
        rate = level * _daily(t, float(rng.uniform(0.2, 0.7)))
        for at in np.flatnonzero(rng.random(rows) < 0.004):  # bursts of 2-6 readings
            span = slice(at, at + int(rng.integers(2, 7)))
            rate[span] *= rng.uniform(2, 3)
            benign[span] = True
        x = rng.poisson(rate).astype(np.float64)
    elif kind == "sparse":
        level = float(rng.uniform(0.05, 0.5))
        rate = np.full(rows, level)
        for at in np.flatnonzero(rng.random(rows) < 0.01):  # clusters of events
            span = slice(at, at + int(rng.integers(2, 10)))
            rate[span] = rng.uniform(2, 6)
            benign[span] = True
        x = rng.poisson(rate).astype(np.float64)
    elif kind == "bytes":
        level = float(rng.uniform(1e4, 1e6))
        x = level * _daily(t, float(rng.uniform(0.0, 0.5))) * rng.lognormal(0, float(rng.uniform(0.3, 0.8)), rows)
        benign = x > np.quantile(x, 0.99)
    elif kind == "cpu":
        level = float(rng.uniform(5, 30))
        x = level * _daily(t, float(rng.uniform(0.0, 0.3))) + rng.normal(0, level * 0.08, rows)
        for at in np.flatnonzero(rng.random(rows) < float(rng.uniform(0.003, 0.01))):  # spikes to 70-100%
            span = slice(at, at + int(rng.integers(1, 4)))
            x[span] = rng.uniform(70, 100)
            benign[span] = True
    elif kind == "heavy":
        level = float(rng.uniform(10, 200))
        x = level + level * 0.03 * rng.standard_t(3, rows)
    else:  # latency
        level = float(rng.uniform(20, 300))
        shape = float(rng.uniform(2, 6))
        x = rng.gamma(shape, level / shape, rows)
        slow = rng.random(rows) < 0.005  # lone slow requests, 3-6x
        x[slow] *= rng.uniform(3, 6, int(slow.sum()))
        benign = slow

    labels = np.zeros(rows, bool)
    anomalies: list[Anomaly] = []
    count = int(rng.choice([1, 2, 2]))
    slots = np.linspace(int(rows * 0.15), rows - 1, count + 1).astype(int)
    for k in range(count):
        fault = str(rng.choice(ANOMALY_KINDS[kind]))
        length = int({"surge": rng.integers(5, 31), "drop": rng.integers(10, 61), "shift": rng.integers(30, 151),
                      "pegged": rng.integers(20, 101), "slow": rng.integers(20, 61)}[fault])  # fmt: skip
        lo, hi = int(slots[k]), int(slots[k + 1])
        length = min(length, max(1, (hi - lo) // 2))
        start = int(rng.integers(lo, max(lo + 1, hi - length)))
        span = slice(start, start + length)
        typical = float(np.median(x[max(0, start - 200) : start])) if start else level
        if fault == "surge":
            x[span] *= rng.uniform(4, 6)
            if kind == "sparse":
                x[span] += rng.poisson(4 * max(level, 0.5), length)  # a sparse stream surges in counts
        elif fault == "drop":
            x[span] = rng.poisson(0.02 * max(typical, 1.0), length)
        elif fault == "shift":
            spread = float(np.subtract(*np.quantile(x[:start], [0.9, 0.1]))) or 1.0
            x[span] += float(rng.choice([-1.0, 1.0])) * rng.uniform(1.5, 3) * spread
            if kind in ("requests", "sparse", "bytes", "cpu", "latency"):  # counts, rates and times stay >= 0
                x[span] = np.maximum(x[span], 0)
        elif fault == "pegged":
            x[span] = rng.uniform(95, 100, length)
        else:  # slow
            x[span] *= 3
        benign[span] = False
        labels[span] = True
        anomalies.append(Anomaly(kind=fault, start=start, end=start + length - 1))
    if kind == "cpu":
        x = np.clip(x, 0, 100)
    elif kind in ("requests", "sparse"):
        x = np.round(x)  # counts stay whole after a surge or a shift
    events = int(np.count_nonzero(np.diff(benign.astype(np.int8)) == 1))
    spec = SystemStreamSpec(
        file=f"system-{index:02d}-{kind}-{interval}s.csv", kind=kind, interval_s=interval, rows=rows,
        level=round(level, 4), benign_events=events, anomalies=anomalies,
    )  # fmt: skip
    return spec, t, x, labels


def write_system_streams(out: Path, files: int, seed: int) -> list[SystemStreamSpec]:
    """Write ``files`` streams and ``streams.json`` into ``out``; the same seed writes the same bytes."""
    return write_set(out, files, seed, generate)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m producers.system_streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the CSVs into")
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--seed", type=int, default=41)
    args = parser.parse_args(argv)
    if args.files < 1:
        parser.error("--files must be at least 1")
    specs = write_system_streams(args.out, args.files, args.seed)
    labelled = sum(len(s.anomalies) for s in specs)
    print(f"{len(specs)} streams, {sum(s.rows for s in specs)} rows, {labelled} labelled anomalies -> {args.out}")


if __name__ == "__main__":
    main()
