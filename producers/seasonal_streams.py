"""Streams with a strong daily and weekly shape whose anomalies are days unlike the same day of other weeks:
``timestamp,value,label`` CSVs.

    python -m producers.seasonal_streams OUT_DIR --files 12 --seed 1

Traffic, a shop's footfall, a plant's shifts: each file is one sensor, sampled every 5 minutes to an hour,
3,000-6,000 rows, busy by day (a plateau or a morning and an evening peak) and lighter at weekends, with
noise of 2-5% of its level. Its labelled anomalies, 1-2 a file after its first 20%, are readings the stream
often makes, at the wrong time:

- ``quiet_day``: a weekday at 40-60% of its usual activity (a storm, a strike);
- ``holiday``: a weekday shaped like a weekend day;
- ``missing_rise``: the day's activity never starts;
- ``shifted_day``: the day's shape 4-6 hours late;
- ``night_surge``: the first three hours of a night as busy as 1.5-2.5 days' peaks;
- ``flat``: the signal frozen for 6-12 hours from 10:00.

The first four are anomalous only against the same hours of other days and weeks (every reading is one
the stream makes at some other time), which is what ``pipeline/profiles.py`` was built for. Seeded and
deterministic; ``streams.json`` in OUT_DIR lists each file's parameters and labelled spans.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from producers.streams import START, Anomaly, write_set

KINDS = ("quiet_day", "holiday", "night_surge", "missing_rise", "flat", "shifted_day")
INTERVALS_S = (300, 600, 1800, 3600)
_DAY_S = 86_400


class SeasonalStreamSpec(BaseModel):
    """What one generated stream holds (written to ``streams.json``)."""

    file: str
    interval_s: int
    rows: int
    level: float
    shape: str  # "plateau" (8:00-18:00) or "peaks" (9:00 and 18:00)
    weekend: float  # a weekend day's activity, relative to a weekday's
    anomalies: list[Anomaly]


def _profile(hour: np.ndarray, shape: str) -> np.ndarray:
    """A day's activity, 0-1, by hour of the day."""
    if shape == "plateau":
        return 1 / (1 + np.exp(-(hour - 8) * 1.5)) / (1 + np.exp((hour - 18) * 1.5))
    return np.exp(-0.5 * ((hour - 9) / 1.5) ** 2) + 0.8 * np.exp(-0.5 * ((hour - 18) / 2) ** 2)


def generate(index: int, rng: np.random.Generator) -> tuple[SeasonalStreamSpec, np.ndarray, np.ndarray, np.ndarray]:
    """One stream: its spec, epoch-second times, values and labels."""
    interval = int(rng.choice(INTERVALS_S))
    rows = int(rng.integers(3000, 6001))
    t = START.timestamp() + np.arange(rows, dtype=np.float64) * interval
    hour = (t % _DAY_S) / 3600
    weekend = ((t - START.timestamp()) // _DAY_S) % 7 >= 5  # START is a Monday
    shape = ("plateau", "peaks")[int(rng.integers(0, 2))]
    level, amplitude, noise = float(rng.uniform(50, 500)), float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.02, 0.05))
    light = float(rng.uniform(0.4, 0.7))
    week = np.where(weekend, light, 1.0)

    def day(hours: np.ndarray, activity: np.ndarray | float) -> np.ndarray:
        """Readings of hours with that activity, noise included."""
        return level * (0.3 + amplitude * _profile(hours, shape) * activity) * (1 + noise * rng.standard_normal(len(hours)))

    x = day(hour, week)
    labels = np.zeros(rows, np.int8)
    per_day = _DAY_S // interval
    anomalies: list[Anomaly] = []
    for _ in range(int(rng.integers(1, 3))):
        kind = str(rng.choice(KINDS))
        first = int(rng.integers(int(0.2 * rows) // per_day + 1, rows // per_day - 1))
        if kind in ("quiet_day", "holiday", "missing_rise", "shifted_day") and weekend[first * per_day]:
            first += 2  # (a weekday)
        s, e = first * per_day, (first + 1) * per_day
        if e >= rows or labels[max(0, s - per_day) : min(rows, e + per_day)].any():
            continue
        hours = hour[s:e]
        if kind == "quiet_day":
            x[s:e] = day(hours, week[s:e] * rng.uniform(0.4, 0.6))
        elif kind == "holiday":
            x[s:e] = day(hours, light)
        elif kind == "missing_rise":
            x[s:e] = level * 0.3 * (1 + noise * rng.standard_normal(e - s))
        elif kind == "shifted_day":
            x[s:e] = day((hours - rng.uniform(4, 6)) % 24, week[s:e])
        elif kind == "night_surge":
            e = s + max(1, 3 * 3600 // interval)
            x[s:e] = level * (0.3 + amplitude * rng.uniform(1.5, 2.5)) * (1 + noise * rng.standard_normal(e - s))
        else:  # flat
            s += 10 * 3600 // interval
            e = s + max(3, int(rng.uniform(6, 12) * 3600 / interval))
            x[s:e] = x[s]
        labels[s:e] = 1
        anomalies.append(Anomaly(kind=kind, start=s, end=e - 1))
    spec = SeasonalStreamSpec(
        file=f"seasonal-{index:02d}-{interval}s.csv", interval_s=interval, rows=rows, level=round(level, 3), shape=shape,
        weekend=round(light, 3), anomalies=anomalies,
    )  # fmt: skip
    return spec, t, x, labels


def write_seasonal_streams(out: Path, files: int, seed: int) -> list[SeasonalStreamSpec]:
    """Write ``files`` streams and ``streams.json`` into ``out``; the same seed writes the same bytes."""
    return write_set(out, files, seed, generate)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m producers.seasonal_streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the CSVs into")
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.files < 1:
        parser.error("--files must be at least 1")
    specs = write_seasonal_streams(args.out, args.files, args.seed)
    labelled = sum(len(s.anomalies) for s in specs)
    print(f"{len(specs)} streams, {sum(s.rows for s in specs)} rows, {labelled} labelled anomalies -> {args.out}")


if __name__ == "__main__":
    main()
