"""The single-form hot path in this process, no broker: message bytes -> decode -> detector, batch by batch.

Prints readings/s and µs a reading split into decode, windowing (the detector up to the model's batch),
the model call and the post-model Python (lines, episodes, checks, statuses). The GC is frozen as in the
worker. Runs against whichever `stream_app` is first on PYTHONPATH, so two trees can be compared by
alternating runs:

    PYTHONPATH=$PWD python scripts/hot_path.py --models DIR [--devices 1000] [--readings 300] [--repeats 3] [--failures 0] [--run 1]

DIR: a model store holding the default model, e.g. `FLOORWATCH_MODEL_DIR=/tmp/m floorwatch train`
(what `floorwatch bench` trains when it finds none). "windowing" is the detector's time outside `_score`
(feature columns, future/duplicate/late checks, the ring buffers, statuses).
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np
import orjson

from producers.scenarios import FEATURES, Scenario, random_failures
from producers.simulator import FleetSimulator
from stream_app.contracts import iso_ms
from stream_app.models.store import ModelStore
from stream_app.pipeline import decode as decode_module
from stream_app.pipeline.detector import Detector
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.pipeline.scorer import Scorer
from stream_app.config.settings import Settings
from stream_app.worker.start import detector_config


def messages(devices: int, per_device: int, seed: int = 3, failures: int = 0) -> list[bytes]:
    """The bench's single-form backlog (lab/bench_e2e.py), ending a minute ago; ``failures``: that many
    failures injected (random_failures), so some windows go over the line and episodes open."""
    scenario = Scenario(devices=devices, duration_s=per_device, seed=seed)
    if failures:
        scenario = scenario.model_copy(update={"failures": random_failures(scenario, failures)})
    sim = FleetSimulator(scenario, int(time.time() * 1000) - per_device * 1000 - 60_000)
    out = []
    for ts, values in sim.ticks():
        for device, row in zip(sim.device_ids, values.tolist()):
            out.append(orjson.dumps({"device_id": device, "ts": iso_ms(ts), "values": dict(zip(FEATURES, row))}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--failures", type=int, default=0, help="failures injected into the simulated fleet")
    parser.add_argument(
        "--run", type=int, default=1,
        help="readings of one device in a row (a backlog drained from a partition: ~batch/run devices a batch, run readings each)",
    )  # fmt: skip
    args = parser.parse_args()
    bundle = ModelStore(args.models).load()
    scorer = Scorer.from_bundle(bundle, max_batch=args.batch)
    scorer.warm()
    settings = Settings()
    raw = messages(args.devices, args.readings, failures=args.failures)
    if args.run > 1:  # within each block of ``run`` ticks, device by device
        raw = [raw[t * args.devices + d] for start in range(0, args.readings, args.run) for d in range(args.devices) for t in range(start, min(start + args.run, args.readings))]
    batches = [raw[i : i + args.batch] for i in range(0, len(raw), args.batch)]
    try:
        from stream_app.pipeline.bulk_decode import BulkDecoder

        columnar = BulkDecoder().decode
    except ImportError:  # a tree from before bulk decoding
        columnar = None
    gc.collect()
    gc.freeze()
    print(f"{len(raw)} messages, batch {args.batch}, runs of {args.run}, {'bulk decode' if columnar else 'decode per message'}")
    rows = []
    for _ in range(args.repeats):
        detector = Detector(bundle, scorer, detector_config(settings.detection, settings.episodes))
        fleet = GroupDetector.single(detector)
        spent = {"decode": 0.0, "detector": 0.0, "score": 0.0, "model": 0.0}
        score_fn, model_fn = detector._score, scorer.score

        def timed_score(*a: object, **k: object) -> None:
            t = time.perf_counter()
            score_fn(*a, **k)  # type: ignore[arg-type]
            spent["score"] += time.perf_counter() - t

        def timed_model(windows: np.ndarray) -> object:
            t = time.perf_counter()
            out = model_fn(windows)
            spent["model"] += time.perf_counter() - t
            return out

        detector._score = timed_score  # type: ignore[method-assign]
        scorer.score = timed_model  # type: ignore[method-assign]
        scored = alerts = 0
        for chunk in batches:
            t0 = time.perf_counter()
            if columnar is not None:
                decoded = columnar(chunk)
                t1 = time.perf_counter()
                detections = fleet.process(decoded.columns)
            else:
                readings = []
                for message in chunk:
                    readings.extend(decode_module.decode(message).readings)
                t1 = time.perf_counter()
                detections = fleet.process(readings)
            t2 = time.perf_counter()
            spent["decode"] += t1 - t0
            spent["detector"] += t2 - t1
            scored += detections.scored
            alerts += len(detections.alerts)
        scorer.score = model_fn  # type: ignore[method-assign]
        n = len(raw)
        total = spent["decode"] + spent["detector"]
        us = {k: v / n * 1e6 for k, v in spent.items()}
        row = {
            "readings/s": n / total,
            "decode": us["decode"],
            "windowing": us["detector"] - us["score"],
            "model": us["model"],
            "post-model": us["score"] - us["model"],
            "total": total / n * 1e6,
        }
        rows.append(row)
        print(f"  {n / total:9,.0f} readings/s  µs a reading: " + "  ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "readings/s") + f"  ({scored} windows, {alerts} alerts)")
    median = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    print("median " + f"{median['readings/s']:,.0f} readings/s  " + "  ".join(f"{k} {v:.2f}" for k, v in median.items() if k != "readings/s"))


if __name__ == "__main__":
    main()
