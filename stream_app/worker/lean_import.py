"""Keras imported for a worker without the optional packages it would load for features a worker never uses.

With TensorFlow 2.21 and Keras 3.15 installed beside JAX, scikit-learn and matplotlib (as the project
installs them), ``import keras`` also imports JAX (TensorFlow Lite's converter), scikit-learn (Keras's
scikit-learn wrapper) and matplotlib (Keras's image gallery); each of those imports is optional in the
module that makes it. Measured on this project's machine: the import's resident memory 725 MB with
them, 499 MB without. So the worker's first ``import keras`` runs with them hidden, and they are
importable again right after: a cold start's or a fresh refit's scaler imports scikit-learn when it
needs it (+62 MB then), and ``KERAS_BACKEND=jax`` keeps JAX.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

OPTIONAL = ("jax", "sklearn", "matplotlib")
log = logging.getLogger(__name__)


def keras_backend() -> str:
    """The backend Keras will pick: ``KERAS_BACKEND``, else its config file's, else TensorFlow."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return str(json.loads(config.read_text()).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def import_keras_lean() -> None:
    """Import Keras (and its backend) once, with the optional packages it does not need hidden."""
    if "keras" in sys.modules:
        return
    backend = keras_backend()
    hidden = [name for name in OPTIONAL if name not in sys.modules and name != backend]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not importable" mark
    try:
        import keras  # noqa: F401
    except (ImportError, ValueError) as exc:  # a release that needs one of them: import as usual, say so
        _unhide(hidden)
        log.warning("importing Keras without %s failed (%s); importing it with them", ", ".join(hidden), exc)
        import keras  # noqa: F401,F811
    finally:
        _unhide(hidden)


def _unhide(names: list[str]) -> None:
    for name in names:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
