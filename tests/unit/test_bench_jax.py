"""The JAX path of the scorer gives TensorFlow's errors on the same ``.keras`` file (skipped without jax)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")

_SCRIPT = """
import sys
import numpy as np
import keras
from stream_app.models.store import ModelStore
from stream_app.pipeline.scorer import Scorer
assert keras.backend.backend() == "jax", keras.backend.backend()
bundle = ModelStore(sys.argv[1]).load()
scorer = Scorer.from_bundle(bundle, max_batch=64)
scorer.warm()
np.save(sys.argv[3], scorer.raw_errors(np.load(sys.argv[2])))
print(scorer.backend, scorer.device)
"""


def test_jax_backend_matches_tensorflow(tiny_model_dir: Path, tmp_path: Path) -> None:
    from stream_app.models.store import ModelStore
    from stream_app.pipeline.scorer import Scorer

    bundle = ModelStore(tiny_model_dir).load()
    rng = np.random.default_rng(0)
    mean, scale = np.asarray(bundle.scaler.mean), np.asarray(bundle.scaler.scale)
    windows = (mean + scale * rng.standard_normal((100, bundle.card.window, len(bundle.card.features)))).astype(
        np.float32
    )
    np.save(tmp_path / "windows.npy", windows)
    expected = Scorer.from_bundle(bundle, max_batch=64).raw_errors(windows)

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tiny_model_dir), str(tmp_path / "windows.npy"), str(tmp_path / "out.npy")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[:2] == ["jax", "cpu"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-4, atol=1e-6)
