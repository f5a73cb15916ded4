"""On a GPU host: do the scorer's errors match the CPU's, and where does a batch's time go?

    KERAS_BACKEND=jax python scripts/gpu_check.py .floorwatch/models

Scores 4,096 windows (100 of them far from normal) on the default JAX device and again in a child
process on the CPU (``JAX_PLATFORMS=cpu``) and prints how far apart the errors are; then times the
scorer's compiled function fed from host memory (as the worker feeds it) and from an array already on
the device. JAX backend only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main(root: str, save_to: str | None = None) -> None:
    import jax

    from stream_app.models.store import ModelStore
    from stream_app.pipeline.scorer import Scorer, backend_and_device, compiled_errors, unrolled

    bundle = ModelStore(Path(root)).load()
    rng = np.random.default_rng(42)
    mean, scale = np.asarray(bundle.scaler.mean, np.float32), np.asarray(bundle.scaler.scale, np.float32)
    shape = (bundle.card.window, len(bundle.card.features))
    windows = (mean + scale * rng.standard_normal((4096, *shape))).astype(np.float32)
    windows[:100] += 5 * scale
    errors = Scorer.from_bundle(bundle, max_batch=4096).raw_errors(windows)
    if save_to:  # the CPU child
        np.save(save_to, errors)
        return

    print("scoring on", backend_and_device())
    cpu_file = "/tmp/floorwatch-gpu-check-cpu.npy"
    subprocess.run([sys.executable, __file__, root, cpu_file], env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=True)
    cpu = np.load(cpu_file)
    print(
        f"errors vs CPU: relative norm {np.linalg.norm(errors - cpu) / np.linalg.norm(cpu):.2e}, "
        f"largest relative difference {np.max(np.abs(errors - cpu) / np.abs(cpu)):.2e}, NaN {int(np.isnan(errors).sum())}"
    )

    compiled = compiled_errors(unrolled(bundle.load_keras()), mean, scale)
    for n in (4096, 65536, 262144):
        host = (mean + scale * rng.standard_normal((n, *shape))).astype(np.float32)
        scorer = Scorer.from_bundle(bundle, max_batch=n)
        runs = (
            ("compiled function, from host memory", compiled, host),
            ("compiled function, from device memory", compiled, jax.device_put(host)),
            ("Scorer.score, from host memory", scorer.score, host),
        )
        for what, call, batch in runs:
            call(batch)  # compile and warm
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < 1.0 or calls < 5:
                call(batch)
                calls += 1
            ms = (time.perf_counter() - started) / calls * 1000
            print(f"batch {n:>7,} {what:<40} {ms:8.3f} ms {n / ms * 1000:>12,.0f} windows/s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
