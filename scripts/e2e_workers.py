"""One worker of k processes (`floorwatch worker --processes k`) drains a backlog: GPU (JAX) vs CPU
(JAX_PLATFORMS=cpu), on the same host, through the bench's own helpers (lab.harness, lab.bench_e2e).

Usage: KERAS_BACKEND=jax FLOORWATCH_MODEL_DIR=... python scripts/e2e_workers.py OUT.json DEVICES READINGS \
    "gpu:1,cpu:1,gpu:4" [LATENCY_RATE]
Each phase gets its own topic, group and Redis prefix; a row (JSON) is printed and OUT rewritten after each,
so a run cut short keeps what it measured. With LATENCY_RATE, one-process phases also measure reading ->
alert-in-Redis latency at that rate (1,000 devices, 15 s, 100 failing).
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from stream_app.config.settings import Settings
from stream_app.lab import bench_e2e as be
from stream_app.lab.harness import WorkerProcess, fresh_services

out, devices, per_dev, plan = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lat_rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
work = Path(tempfile.mkdtemp(prefix="e2e"))
base = Settings().model_copy(update={"readings_partitions": 16, "model_dir": Path(os.environ["FLOORWATCH_MODEL_DIR"])})
rows: list[dict[str, object]] = []


def run_phase(live: Settings, platform: str, k: int, idx: int) -> None:
    s = be.phase_settings(live, f"{platform}{k}x{idx}")
    t0 = time.time()
    total, _ = be.produce_backlog(s, devices, per_dev, 1)
    produce_s = time.time() - t0
    if platform == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        os.environ.pop("JAX_PLATFORMS", None)
    worker = WorkerProcess(s, work / f"w-{platform}{k}x{idx}.log", processes=k)
    try:
        t1 = time.time()
        worker.wait_ready(300)
        ready_s = time.time() - t1
        seconds, rate, settled, split, stalls = be.drain_processes(worker, total, 240)
        row: dict[str, object] = dict(
            platform=platform, processes=k, readings=total, produce_s=round(produce_s, 1), ready_s=round(ready_s, 1),
            seconds=round(seconds, 2), readings_per_s=round(rate), settled_per_s=settled and round(settled),
            split=split, stalls=stalls, rss_mb=round(worker.rss_mb()),
        )  # fmt: skip
        if lat_rate and k == 1:
            time.sleep(2)
            lat = be.measure_latency(s, worker, rate=lat_rate, devices=1000, seconds=15, failing=100)
            row["latency"] = json.loads(lat.model_dump_json())
    finally:
        worker.stop()
    print(json.dumps(row), flush=True)
    rows.append(row)


with fresh_services(base, work / "services") as live:
    for i, item in enumerate(plan.split(",")):
        platform, k = item.split(":")
        try:
            run_phase(live, platform, int(k), i)
        except Exception as exc:  # record and go on
            print(f"phase {item} failed: {exc!r}", flush=True)
            rows.append(dict(platform=platform, processes=int(k), error=repr(exc)))
        Path(out).write_text(json.dumps(rows, indent=1))
