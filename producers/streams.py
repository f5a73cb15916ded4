"""Univariate test streams the detector was never tuned on: ``timestamp,value,label`` CSVs.

    python -m producers.streams OUT_DIR --files 20 --seed 1

Each file is one sensor with its own sampling interval (1 minute to 1 hour) and benign behaviour a
real stream has: a level, noise (some of it autocorrelated), daily and weekly cycles, slow drift,
regime changes (a lasting move to another level, over a short ramp), idle stretches sitting at one
value on a schedule, and quantised readings. None of that is labelled. Labelled anomalies, 0-3 a
file after its first 15% (NAB's probationary share), are of these kinds:

- ``spike``: one to three readings far off the level;
- ``level_shift``: an abrupt, large shift that lasts a while, then ends;
- ``variance_burst``: the noise grows several-fold for a while;
- ``ramp``: a slow ramp to failure, labelled over the whole ramp (then the machine is repaired);
- ``stopped``: the signal freezes at its last value (no noise, no cycle), off the idle schedule.

Benign and anomalous changes differ in what a model of the stream can learn: regime changes are
moderate, gradual and lasting; idle stretches recur on a schedule; anomalies are abrupt, large,
temporary or out of schedule. ``--benign-spikes RATE`` adds what busy real streams also have and the
default files do not: lone readings 4-8 sd off the level at that rate (e.g. 0.003), never labelled, so a
detector must learn that one spike is how the stream is (labelled spikes stay 6-10 sd, 1-3 readings).
``--wandering SHARE`` makes that share of the files wander like a random walk on top (a step of one noise sd
a reading, held while the signal is idle or stopped): a price, a queue, a counter's rate, whose level never
comes back to where the first rows had it. ``--rows LO:HI`` makes the files shorter or longer (2,000-8,000 rows
by default), ``--drop SHARE`` loses that share of readings at random and three outages a file (irregular times).
Seeded and deterministic: the same seed gives the same bytes.
``streams.json`` in OUT_DIR lists each file's parameters and labelled spans.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel

INTERVALS_S = (60, 120, 300, 600, 900, 1800, 3600)
ANOMALY_KINDS = ("spike", "level_shift", "variance_burst", "ramp", "stopped")
START = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
# Long enough for several daily cycles at 1/min, several weeks at 1/h (``--rows`` probes shorter and longer files).
ROWS = (2000, 8000)
_DAY_S, _WEEK_S = 86_400, 7 * 86_400


class Anomaly(BaseModel):
    kind: str
    start: int  # first labelled row
    end: int  # last labelled row, inclusive


class StreamSpec(BaseModel):
    """What one generated stream holds (written to ``streams.json``)."""

    file: str
    interval_s: int
    rows: int
    level: float
    noise_sd: float
    autocorrelation: float
    daily: float  # amplitude, in noise sd
    weekly: float  # weekend drop, in noise sd
    drift: float  # total slow drift over the file, in noise sd
    regimes: list[tuple[int, float]]  # (row, new level offset in noise sd)
    idle_hours: tuple[int, int] | None  # (from, to) hour of day at which the signal sits at its floor
    resolution: float  # readings are rounded to this (0: not rounded)
    anomalies: list[Anomaly]
    wandering: bool = False  # a random walk on top (``--wandering``)


def generate(
    index: int,
    rng: np.random.Generator,
    *,
    benign_spikes: float = 0.0,
    wandering: float = 0.0,
    rows_range: tuple[int, int] = ROWS,
    drop: float = 0.0,
) -> tuple[StreamSpec, np.ndarray, np.ndarray, np.ndarray]:
    """One stream: its spec, epoch-second times, values and labels."""
    interval = int(rng.choice(INTERVALS_S))
    rows = int(rng.integers(rows_range[0], rows_range[1] + 1))
    t0 = START.timestamp() + int(rng.integers(0, 7)) * _DAY_S
    t = t0 + np.arange(rows, dtype=np.float64) * interval
    level = float(rng.choice([0.0, 1.0, 20.0, 60.0, 500.0]) + rng.uniform(0, 10))
    sd = float(abs(level) * rng.uniform(0.01, 0.05) + rng.uniform(0.05, 0.5))
    phi = float(rng.choice([0.0, 0.5, 0.9]))
    daily = float(rng.choice([0.0, 1.0, 3.0])) if interval <= 1800 else float(rng.choice([0.0, 2.0]))
    weekly = float(rng.choice([0.0, 0.0, 2.0])) if rows * interval >= 2 * _WEEK_S else 0.0
    drift = float(rng.uniform(-3.0, 3.0))
    idle = (int(h := rng.integers(0, 20)), int(h + rng.integers(2, 5))) if rng.random() < 0.25 else None
    resolution = float(rng.choice([0.0, 0.0, sd / 2]))

    noise = rng.normal(0, sd, rows)
    for i in range(1, rows):  # AR(1) with the same marginal sd
        noise[i] = phi * noise[i - 1] + math.sqrt(1 - phi**2) * noise[i]
    hour = (t % _DAY_S) / 3600
    weekend = ((t // _DAY_S + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    x = level + noise + daily * sd * np.sin(2 * math.pi * (hour - 9) / 24)
    x -= weekly * sd * weekend
    x += drift * sd * np.linspace(0, 1, rows)
    regimes = []
    for _ in range(int(rng.integers(0, 3))):
        at, shift = int(rng.integers(rows // 10, rows)), float(rng.choice([-1, 1]) * rng.uniform(1.0, 2.5))
        ramp = max(1, int(3600 / interval))  # an hour to settle
        x += shift * sd * np.clip((np.arange(rows) - at) / ramp, 0, 1)
        regimes.append((at, round(shift, 3)))
    floor = level - 3 * sd
    is_idle = np.zeros(rows, bool)
    if idle is not None:
        is_idle = (hour >= idle[0]) & (hour < idle[1])
        x[is_idle] = floor

    labels = np.zeros(rows, bool)
    anomalies: list[Anomaly] = []
    count = int(rng.choice([0, 1, 2, 2, 3, 3]))
    slots = np.linspace(int(rows * 0.15), rows - 1, count + 1).astype(int)  # one anomaly per slot, apart
    for k in range(count):
        kind = str(rng.choice(ANOMALY_KINDS))
        lo, hi = int(slots[k]), int(slots[k + 1])
        length = {
            "spike": int(rng.integers(1, 4)),
            "level_shift": int(rng.integers(10, 60)),
            "variance_burst": int(rng.integers(20, 80)),
            "ramp": int(rng.integers(40, 200)),
            "stopped": max(30, int(rng.integers(4, 12) * 3600 / interval)),
        }[kind]
        length = min(length, max(1, (hi - lo) // 2))
        start = int(rng.integers(lo, max(lo + 1, hi - length)))
        end = start + length - 1
        span = slice(start, end + 1)
        sign = float(rng.choice([-1.0, 1.0]))
        if kind == "spike":
            x[span] += sign * rng.uniform(6, 10) * sd
        elif kind == "level_shift":
            x[span] += sign * rng.uniform(5, 8) * sd
        elif kind == "variance_burst":
            x[span] += rng.normal(0, rng.uniform(4, 8) * sd, length)
        elif kind == "ramp":
            x[span] += sign * np.linspace(0, rng.uniform(6, 10), length) * sd
        else:  # stopped: frozen at its last live value
            live = np.flatnonzero(~is_idle[:start])
            x[span] = x[live[-1]] if len(live) else x[start - 1]
            is_idle[span] = True
        labels[span] = True
        anomalies.append(Anomaly(kind=kind, start=start, end=end))
    if benign_spikes > 0:  # drawn last, so the default files are the same bytes with or without the option
        at = np.flatnonzero((rng.random(rows) < benign_spikes) & ~is_idle & ~labels)
        x[at] += rng.choice([-1.0, 1.0], len(at)) * rng.uniform(4, 8, len(at)) * sd
    wanders = wandering > 0 and bool(rng.random() < wandering)  # drawn after the rest, as the spikes
    if wanders:
        steps = np.where(is_idle, 0.0, rng.normal(0, sd, rows))  # an idle or stopped stretch stays flat
        x += np.cumsum(steps)
    if resolution:
        live = ~is_idle
        x[live] = np.round(x[live] / resolution) * resolution
    spec = StreamSpec(
        file=f"stream-{index:02d}-{interval}s.csv", interval_s=interval, rows=rows, level=round(level, 4),
        noise_sd=round(sd, 4), autocorrelation=phi, daily=daily, weekly=weekly, drift=round(drift, 3), regimes=regimes,
        idle_hours=idle, resolution=round(resolution, 6), anomalies=anomalies, wandering=wanders,
    )  # fmt: skip
    if drop > 0:  # drawn last too
        return _thinned(spec, t, x, labels, rng, drop)
    return spec, t, x, labels


def _thinned(
    spec: StreamSpec, t: np.ndarray, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, drop: float
) -> tuple[StreamSpec, np.ndarray, np.ndarray, np.ndarray]:
    """The stream with a share ``drop`` of its readings lost at random and three outages of 5-30 readings
    after its first fifth (a gateway on a poor link): irregular times. Labelled spans keep the readings left
    in them; a span with none left is no longer an anomaly of the file."""
    keep = rng.random(spec.rows) >= drop
    for _ in range(3):
        at = int(rng.integers(spec.rows // 5, max(spec.rows // 5 + 1, spec.rows - 40)))
        keep[at : at + int(rng.integers(5, 31))] = False
    rank = np.cumsum(keep) - 1  # each kept reading's row in the thinned file
    anomalies = []
    for a in spec.anomalies:
        left = np.flatnonzero(keep[a.start : a.end + 1]) + a.start
        if len(left):
            anomalies.append(a.model_copy(update={"start": int(rank[left[0]]), "end": int(rank[left[-1]])}))
    thinned = spec.model_copy(update={"rows": int(keep.sum()), "anomalies": anomalies})
    return thinned, t[keep], x[keep], labels[keep]


def write_csv(path: Path, t: np.ndarray, x: np.ndarray, labels: np.ndarray) -> None:
    """One stream as ``timestamp,value,label`` rows (ISO times, 6 significant digits)."""
    lines = ["timestamp,value,label"]
    lines += [
        f"{datetime.fromtimestamp(ts, timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')},{v:.6g},{int(lab)}"
        for ts, v, lab in zip(t.tolist(), x.tolist(), labels.tolist())
    ]
    path.write_text("\n".join(lines) + "\n")


class _Spec(Protocol):
    file: str

    def model_dump(self) -> dict[str, Any]: ...


SpecT = TypeVar("SpecT", bound=_Spec)
Generated = tuple[SpecT, np.ndarray, np.ndarray, np.ndarray]  # spec, epoch-second times, values, labels


def write_set(
    out: Path, files: int, seed: int, generate_one: Callable[[int, np.random.Generator], Generated[SpecT]], **settings: Any
) -> list[SpecT]:
    """Write ``files`` streams of a generator and ``streams.json`` (the seed, ``settings`` and each file's spec)
    into ``out``; each file has a random stream of its own, spawned from ``seed``: the same seed, the same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    specs = []
    for index, child in enumerate(np.random.SeedSequence(seed).spawn(files)):
        spec, t, x, labels = generate_one(index, np.random.default_rng(child))
        write_csv(out / spec.file, t, x, labels)
        specs.append(spec)
    manifest = {"seed": seed, **settings, "files": [s.model_dump() for s in specs]}
    (out / "streams.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return specs


def write_streams(
    out: Path,
    files: int,
    seed: int,
    *,
    benign_spikes: float = 0.0,
    wandering: float = 0.0,
    rows_range: tuple[int, int] = ROWS,
    drop: float = 0.0,
) -> list[StreamSpec]:
    """Write ``files`` streams and ``streams.json`` into ``out``; the same seed writes the same bytes."""
    one = partial(generate, benign_spikes=benign_spikes, wandering=wandering, rows_range=rows_range, drop=drop)
    settings: dict[str, Any] = {"benign_spikes": benign_spikes, "wandering": wandering}
    if rows_range != ROWS:  # the default manifests stay as they were
        settings["rows"] = list(rows_range)
    if drop:
        settings["drop"] = drop
    return write_set(out, files, seed, one, **settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m producers.streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the CSVs into")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--benign-spikes", type=float, default=0.0, help="share of readings that are unlabelled lone spikes")
    parser.add_argument("--wandering", type=float, default=0.0, help="share of files whose level wanders like a random walk")
    parser.add_argument("--rows", default=f"{ROWS[0]}:{ROWS[1]}", help="LO:HI rows a file (default %(default)s)")
    parser.add_argument("--drop", type=float, default=0.0, help="share of readings lost at random, with 3 outages a file")
    args = parser.parse_args(argv)
    try:
        lo, hi = (int(v) for v in args.rows.split(":"))
    except ValueError:
        parser.error("--rows must be LO:HI, two whole numbers")
    if not 200 <= lo <= hi:
        parser.error("--rows must have 200 <= LO <= HI")
    if args.files < 1:
        parser.error("--files must be at least 1")
    if not 0 <= args.benign_spikes < 0.5:
        parser.error("--benign-spikes must be in [0, 0.5)")
    if not 0 <= args.drop < 0.9:
        parser.error("--drop must be in [0, 0.9)")
    if not 0 <= args.wandering <= 1:
        parser.error("--wandering must be in [0, 1]")
    specs = write_streams(
        args.out, args.files, args.seed, benign_spikes=args.benign_spikes, wandering=args.wandering, rows_range=(lo, hi),
        drop=args.drop,
    )  # fmt: skip
    labelled = sum(len(s.anomalies) for s in specs)
    print(f"{len(specs)} streams, {sum(s.rows for s in specs)} rows, {labelled} labelled anomalies -> {args.out}")


if __name__ == "__main__":
    main()
