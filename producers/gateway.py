"""A gateway whose normal no stored model has seen: the production floor's own Gaussians, as CSVs.

    python -m producers.gateway OUT_DIR --devices 10 --hours 2 --seed 3

Each device's sensors are independent Gaussians (the production floor guide's figures: temperature
0.06 +- 0.002, vibration 0.075 +- 0.002, motor_rpm 0.045 +- 0.001, motor_amps 0.084 +- 0.002), with no
drift, daily cycle or shared load: not what the simulator (and so the default model) calls normal.
The last device overheats for a while in the second half (temperature ramps up by 10 sd), labelled in
the ``anomaly`` column. It is the cold-start check: ``floorwatch evaluate --csv OUT_DIR`` with the
stored default model and no training run.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from .scenarios import FEATURES

MEANS = {"temperature": 0.06, "vibration": 0.075, "motor_rpm": 0.045, "motor_amps": 0.084}
SDS = {"temperature": 0.002, "vibration": 0.002, "motor_rpm": 0.001, "motor_amps": 0.002}
START_MS = 1_795_000_000_000


def write_gateway(out: Path, *, devices: int = 10, hours: float = 2.0, seed: int = 3) -> list[Path]:
    rng = np.random.default_rng(seed)
    n = int(hours * 3600)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in range(devices):
        values = np.stack([rng.normal(MEANS[f], SDS[f], n) for f in FEATURES], axis=1)
        label = np.zeros(n, bool)
        if d == devices - 1:  # the faulty one: a 10-sd temperature ramp over 10 minutes, held 10 more
            start, ramp = int(n * 0.6), 600
            rise = np.concatenate([np.linspace(0, 10 * SDS["temperature"], ramp), np.full(ramp, 10 * SDS["temperature"])])
            values[start : start + 2 * ramp, FEATURES.index("temperature")] += rise[: n - start]
            label[start : start + 2 * ramp] = True
        path = out / f"gw-{d:02d}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["ts", *FEATURES, "anomaly"])
            for i in range(n):
                w.writerow([START_MS + i * 1000, *(f"{v:.6f}" for v in values[i]), int(label[i])])
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    paths = write_gateway(args.out, devices=args.devices, hours=args.hours, seed=args.seed)
    print(f"{len(paths)} devices -> {args.out}")


if __name__ == "__main__":
    main()
