"""k worker processes in one consumer group drain a backlog: GPU (JAX) vs CPU (JAX_PLATFORMS=cpu), same host.
Adapted from ../shared/tools/gpu_e2e.py to this round's layout (lab.harness, lab.bench_e2e).
Usage: KERAS_BACKEND=jax FLOORWATCH_MODEL_DIR=... python scripts/e2e_workers.py OUT.json DEVICES READINGS "gpu:1,cpu:1,cpu:2" [latency_rate]
"""
import json, os, sys, tempfile, time
from pathlib import Path

from stream_app.config.settings import Settings
from stream_app.lab import bench_e2e as be
from stream_app.lab.bench_stats import drain_rate
from stream_app.lab.harness import WorkerProcess, fresh_services

out, devices, per_dev, plan = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lat_rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
work = Path(tempfile.mkdtemp(prefix="e2e"))
base = Settings().model_copy(update={"readings_partitions": 16, "model_dir": Path(os.environ["FLOORWATCH_MODEL_DIR"])})
rows = []


def run_phase(live, platform, k, idx):
    name = f"{platform}{k}x{idx}"
    s = be.phase_settings(live, name)
    t0 = time.time()
    total, _ = be.produce_backlog(s, devices, per_dev, 1)
    produce_s = time.time() - t0
    if platform == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        os.environ.pop("JAX_PLATFORMS", None)
    workers = [WorkerProcess(s, work / f"w-{name}-{i}.log") for i in range(k)]
    try:
        for w in workers:
            w.wait_ready(300)
        samples, deadline = [], time.monotonic() + 240
        while time.monotonic() < deadline:
            c = sum(w.metrics().get("floorwatch_readings_total", 0.0) for w in workers)
            samples.append((time.monotonic(), c))
            if c >= total:
                break
            for w in workers:
                w.check()
            time.sleep(0.2)
        secs, rate = drain_rate(samples, total)
        per = [w.metrics() for w in workers]
        row = dict(platform=platform, workers=k, readings=total, produce_s=round(produce_s, 1), seconds=round(secs, 2),
                   readings_per_s=round(rate), per_worker=[int(m.get("floorwatch_readings_total", 0)) for m in per],
                   rss_mb=[round(w.rss_mb()) for w in workers])
        if lat_rate and k == 1:
            time.sleep(2)
            lat = be.measure_latency(s, workers[0], rate=lat_rate, devices=1000, seconds=15, failing=100)
            row["latency"] = json.loads(lat.model_dump_json())
    finally:
        for w in workers:
            w.stop()
    print(json.dumps(row), flush=True)
    rows.append(row)


with fresh_services(base, work / "services") as live:
    for i, item in enumerate(plan.split(",")):
        platform, k = item.split(":")
        try:
            run_phase(live, platform, int(k), i)
        except Exception as exc:  # record and go on
            print(f"phase {item} failed: {exc!r}", flush=True)
            rows.append(dict(platform=platform, workers=int(k), error=repr(exc)))
        Path(out).write_text(json.dumps(rows, indent=1))
