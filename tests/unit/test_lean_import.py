"""The worker's first Keras import leaves out JAX, scikit-learn and matplotlib, and they import normally after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.worker.lean_import import keras_backend

_PROBE = """
import json, sys
from stream_app.worker.lean_import import OPTIONAL, import_keras_lean
import_keras_lean()
import keras
loaded = [name for name in OPTIONAL if name in sys.modules]
import sklearn.preprocessing  # importable again afterwards
print(json.dumps({"backend": keras.backend.backend(), "loaded": loaded}))
"""


def _probe(backend: str) -> dict[str, object]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_tensorflow_worker_imports_keras_without_the_optional_packages() -> None:
    assert _probe("tensorflow") == {"backend": "tensorflow", "loaded": []}


def test_a_jax_worker_keeps_jax() -> None:
    assert _probe("jax") == {"backend": "jax", "loaded": ["jax"]}


def test_backend_from_the_environment_then_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert keras_backend() == "tensorflow"  # no config file
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    assert keras_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert keras_backend() == "torch"
    monkeypatch.delenv("KERAS_BACKEND")
    (tmp_path / "keras.json").write_text("not json")
    assert keras_backend() == "tensorflow"


def test_a_keras_that_needs_a_hidden_package_is_imported_with_it() -> None:
    # A stand-in "keras" that insists on scikit-learn: the lean import falls back to the usual one.
    probe = """
import sys, types, json
from stream_app.worker import lean_import
class Finder:
    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        import importlib.util
        loader = type("L", (), {"create_module": lambda self, spec: None,
                                "exec_module": lambda self, module: __import__("sklearn")})()
        return importlib.util.spec_from_loader(name, loader)
sys.meta_path.insert(0, Finder())
lean_import.import_keras_lean()
print(json.dumps({"keras": "keras" in sys.modules, "sklearn": "sklearn" in sys.modules}))
"""
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "KERAS_BACKEND": "tensorflow"},
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"keras": True, "sklearn": True}
    assert "importing Keras without" in out.stderr
