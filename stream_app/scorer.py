"""Step 4: score a micro-batch of windows with one compiled model call.

``model.predict`` costs tens of milliseconds per call whatever the batch, so the hot path uses a
compiled function instead: ``tf.function(jit_compile=True)`` (XLA) on TensorFlow, ``jax.jit`` on
JAX. A compiled function is specialised to its input shape, so batches are padded up to a few fixed
sizes, all compiled ("warmed") before the first message arrives.

The same ``.keras`` file runs on every Keras 3 backend; pick one with ``KERAS_BACKEND``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .model_store import ModelBundle, Scaler

if TYPE_CHECKING:
    import keras


@dataclass(slots=True)
class Scores:
    """Scores of n windows: per-feature errors relative to normal (n, F), and the window score (n,)."""

    feature_errors: np.ndarray
    score: np.ndarray


def pad_sizes(max_batch: int) -> list[int]:
    """Batch shapes to compile: powers of 8 below ``max_batch``, and ``max_batch`` itself."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 8
    return sizes + [max_batch]


class Scorer:
    """Scaled, padded, compiled reconstruction-error scoring for one model version."""

    def __init__(
        self,
        model: keras.Model,
        scaler: Scaler,
        *,
        reference: list[float] | None = None,
        max_batch: int = 1024,
        sizes: Sequence[int] | None = None,
    ) -> None:
        _, self.window, self.n_features = model.input_shape
        self.max_batch = max_batch
        # Batch shapes to compile; the benchmark passes its own so each measured size is exact.
        self.sizes = sorted({*(s for s in sizes or () if 0 < s < max_batch), max_batch}) if sizes else pad_sizes(max_batch)
        self._scaler = scaler
        self._reference = np.asarray(reference or [1.0] * self.n_features, np.float32)
        self._errors = _compile(model)
        self._pad = np.zeros((max_batch, self.window, self.n_features), np.float32)
        self.backend, self.device = _backend_and_device()

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, *, max_batch: int = 1024) -> Scorer:
        return cls(
            bundle.load_keras(), bundle.scaler, reference=bundle.thresholds.feature_reference, max_batch=max_batch
        )

    def warm(self) -> float:
        """Compile every padded shape now; returns the seconds it took."""
        started = time.perf_counter()
        for size in self.sizes:
            self._errors(self._pad[:size])
        return time.perf_counter() - started

    def score(self, windows: np.ndarray) -> Scores:
        """Score raw (unscaled) windows of shape (n, T, F)."""
        relative = self.raw_errors(windows) / self._reference
        return Scores(feature_errors=relative, score=relative.max(axis=1))

    def raw_errors(self, windows: np.ndarray) -> np.ndarray:
        """Per-feature mean absolute errors of raw windows (n, T, F), before normalisation; any n."""
        out = np.empty((len(windows), self.n_features), np.float32)
        for start in range(0, len(windows), self.max_batch):
            chunk = windows[start : start + self.max_batch]
            out[start : start + len(chunk)] = self._raw_errors(self._scaler.transform(chunk))
        return out

    def _raw_errors(self, scaled: np.ndarray) -> np.ndarray:
        n = len(scaled)
        size = next(s for s in self.sizes if s >= n)
        if size == n:
            batch = scaled
        else:
            batch = self._pad[:size]
            batch[:n] = scaled
            batch[n:] = 0.0
        return np.asarray(self._errors(batch))[:n]


def _compile(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True, reduce_retracing=True)
        def errors_tf(x: tf.Tensor) -> tf.Tensor:
            return tf.reduce_mean(tf.abs(x - model(x, training=False)), axis=1)

        return lambda x: errors_tf(tf.convert_to_tensor(x)).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in model.trainable_variables]
        frozen = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def errors_jax(x: jax.Array) -> jax.Array:
            recon, _ = model.stateless_call(trainable, frozen, x, training=False)
            return jnp.mean(jnp.abs(x - recon), axis=1)

        return lambda x: np.asarray(errors_jax(x))
    # torch and others: an uncompiled call, correct but slower.
    return lambda x: keras.ops.convert_to_numpy(keras.ops.mean(keras.ops.abs(x - model(x, training=False)), axis=1))


def _backend_and_device() -> tuple[str, str]:
    import keras

    backend = keras.backend.backend()
    device = "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    elif backend == "jax":
        import jax

        device = jax.default_backend()
    return backend, device
