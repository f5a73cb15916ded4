"""The hour check (pipeline/profiles.py) for a fleet of one-sensor devices started in the same hour.

Such a fleet learns its first lines in the same hour (a week after it started) and relearns them together
each day, so the batch that closes that hour holds up scoring unless a batch learns only a few. Feeds
``HourProfiles.observe_many`` in batches of ``--batch`` windows, as the detector does, one reading a device
every ``--every`` minutes (a daily wave and noise), and prints the batches' time: median, p99, the slowest
and the slowest of each day. Runs against whichever `stream_app` is first on PYTHONPATH:

    PYTHONPATH=$PWD python scripts/hour_fleet.py [--devices 10000] [--days 16] [--every 60] [--batch 1024]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stream_app.pipeline.profiles import HOUR_MS, HourProfiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=16)
    parser.add_argument("--every", type=int, default=60, help="minutes between two readings of a device")
    parser.add_argument("--batch", type=int, default=1024, help="windows a batch")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    profiles = HourProfiles()
    ids = [f"d{k:05d}" for k in range(args.devices)]
    phase = rng.uniform(0, 24, args.devices)
    start = 1_700_000_000_000 // HOUR_MS * HOUR_MS
    took: list[float] = []
    day_of: list[int] = []
    for step in range(args.days * 24 * 60 // args.every):
        at = start + step * args.every * 60_000
        hour = at / HOUR_MS % 24
        values = 10.0 * np.sin((hour + phase) / 24 * 2 * np.pi) + rng.normal(0.0, 1.0, args.devices)
        for first in range(0, args.devices, args.batch):
            members = slice(first, first + args.batch)
            ends = np.full(len(ids[members]), at, np.int64)
            began = time.perf_counter()
            profiles.observe_many(ids[members], ends, values[members])
            took.append(time.perf_counter() - began)
            day_of.append(step * args.every // (24 * 60))
    ms = np.array(took) * 1e3
    print(
        f"{len(ms)} batches of {args.batch}: median {np.median(ms):.1f} ms, p99 {np.quantile(ms, 0.99):.1f}, "
        f"max {ms.max():.1f}; all {ms.sum() / 1e3:.1f} s"
    )
    worst = np.zeros(args.days)
    np.maximum.at(worst, np.array(day_of), ms)
    print("slowest batch of each day (ms): " + " ".join(f"{w:.0f}" for w in worst))
    print(f"devices with a line: {sum(1 for line in profiles._line if line > 0)} of {args.devices}")


if __name__ == "__main__":
    main()
