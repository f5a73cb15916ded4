"""Score a micro-batch of windows with one compiled model call.

``model.predict`` costs tens of milliseconds per call whatever the batch, so the hot path uses a
compiled function instead: ``tf.function(jit_compile=True)`` (XLA) on TensorFlow, ``jax.jit`` on
JAX. A compiled function is specialised to its input shape, so batches are padded up to a few fixed
sizes, all compiled ("warmed") before the first message arrives. Scaling happens inside the compiled
function too: one pass over the windows instead of three numpy passes, and on a GPU the raw windows
go to the device as they are.

The same ``.keras`` file runs on every Keras 3 backend; pick one with ``KERAS_BACKEND``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from stream_app.models.store import ModelBundle, Scaler

if TYPE_CHECKING:
    import keras


@dataclass(slots=True)
class Scores:
    """Scores of n windows: per-feature errors relative to normal (n, F), and the window score (n,).

    ``peak`` (n,), when the model has a peak line: the window's largest single-reading error relative to
    normal (each feature's largest absolute error over the window, over its typical largest). A mean
    over T readings dilutes a one-reading spike T times; the peak does not.
    """

    feature_errors: np.ndarray
    score: np.ndarray
    peak: np.ndarray | None = None


class WindowScorer(Protocol):
    """What the detector asks of a scorer: ``Scorer`` (the compiled model), IsolationForest's, a test's stand-in."""

    max_batch: int

    def score(self, windows: np.ndarray) -> Scores: ...


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
        peak_reference: list[float] | None = None,
        max_batch: int = 1024,
        sizes: Sequence[int] | None = None,
    ) -> None:
        _, self.window, self.n_features = model.input_shape
        self.max_batch = max_batch
        # Batch shapes to compile; the benchmark passes its own so each measured size is exact.
        self.sizes = sorted({*(s for s in sizes or () if 0 < s < max_batch), max_batch}) if sizes else pad_sizes(max_batch)
        self._reference = np.asarray(reference or [1.0] * self.n_features, np.float32)
        self._peak_reference = np.asarray(peak_reference, np.float32) if peak_reference else None
        self.backend, self.device = backend_and_device()
        self._errors = compiled_errors(model, np.asarray(scaler.mean, np.float32), np.asarray(scaler.scale, np.float32),
                                       centre=scaler.centre_mask(), unroll=self.device != "cpu")  # fmt: skip
        self._pad = np.zeros((max_batch, self.window, self.n_features), np.float32)
        self.warm_seconds: float | None = None  # what ``warm`` took (the hot reload logs it)

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, *, max_batch: int = 1024) -> Scorer:
        t = bundle.thresholds
        return cls(
            bundle.load_keras(), bundle.scaler, reference=t.feature_reference, peak_reference=t.peak_reference,
            max_batch=max_batch,
        )  # fmt: skip

    def warm(self) -> float:
        """Compile every padded shape now (a dummy batch of each size); returns the seconds it took.

        Nearly free for a model whose architecture this process has compiled before (``compiled_errors``):
        the compiled graph is reused, only the weights differ.
        """
        started = time.perf_counter()
        for size in self.sizes:
            self._errors(self._pad[:size])
        self.warm_seconds = time.perf_counter() - started
        return self.warm_seconds

    def score(self, windows: np.ndarray) -> Scores:
        """Score raw (unscaled) windows of shape (n, T, F)."""
        both = self._all_errors(windows)
        f = self.n_features
        relative = both[:, :f] / self._reference
        peak = row_max(both[:, f:] / self._peak_reference) if self._peak_reference is not None else None
        return Scores(feature_errors=relative, score=row_max(relative), peak=peak)

    def raw_errors(self, windows: np.ndarray) -> np.ndarray:
        """Per-feature mean absolute errors of raw windows (n, T, F), before normalisation; any n."""
        return self._all_errors(windows)[:, : self.n_features]

    def raw_errors_and_peaks(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and largest absolute errors of raw windows, before normalisation: (n, F) each."""
        both = self._all_errors(windows)
        return both[:, : self.n_features], both[:, self.n_features :]

    def _all_errors(self, windows: np.ndarray) -> np.ndarray:
        out = np.empty((len(windows), 2 * self.n_features), np.float32)
        for start in range(0, len(windows), self.max_batch):
            chunk = windows[start : start + self.max_batch]
            out[start : start + len(chunk)] = self._raw_errors(chunk)
        return out

    def _raw_errors(self, windows: np.ndarray) -> np.ndarray:
        n = len(windows)
        size = next(s for s in self.sizes if s >= n)
        if size == n and windows.dtype == np.float32:
            batch = windows
        else:
            batch = self._pad[:size]
            batch[:n] = windows
            batch[n:] = 0.0
        return np.asarray(self._errors(batch))[:n]


def row_max(a: np.ndarray) -> np.ndarray:
    """Each row's maximum of an (n, k) array with k small, column by column.

    numpy's ``max(axis=1)`` over a short last axis costs ~40 ns a row: at GPU batch sizes it took
    longer than the model (7 ms of 11 at 65,536 windows on an H100 host).
    """
    return functools.reduce(np.maximum, a.T)


def unrolled(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose recurrent layers are unrolled over the (short, fixed) window.

    A rolled LSTM compiles to a loop of T steps; on a GPU each step is a round of small kernel launches,
    and the loop ran 70x slower than the unrolled graph at 65,536 windows on an H100 (93k vs 6.5M
    windows/s). Unrolled, XLA fuses across steps; on CPU it is about the same speed, so the scorer
    unrolls only on an accelerator. Same weights, same function: only how it is compiled changes.
    """
    import keras

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if isinstance(layer, keras.layers.RNN) and not config.get("unroll"):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


Errors = Callable[[np.ndarray], np.ndarray]


@dataclass(slots=True)
class _Compiled:
    """One compiled error function of (raw, mean, scale, centre, trainable weights, other weights) for one architecture."""

    template: keras.Model  # the model whose graph was traced: weights are arguments, its own are never read
    fn: Callable[..., Any]  # a tf.function or a jax.jit function


# Compiled error functions by architecture, so that a new version of the same architecture (a hot
# reload, a refit, a shadow candidate) reuses the compiled graph: tracing and XLA-compiling an LSTM's
# padded shapes took ~20 s of CPU on the 2-core machine, beside the batches a reload must not slow.
_COMPILED: dict[str, _Compiled] = {}
_COMPILED_KEEP = 4  # architectures kept (a template model each, ~MBs)
_COMPILED_LOCK = threading.Lock()


def architecture_key(model: keras.Model, *, unroll: bool) -> str:
    """What a compiled graph depends on besides weight values: backend, layers, shapes, dtypes.

    Read from the layers' own attributes, not ``model.get_config()``: Keras's serialization imports
    TensorFlow whenever it is installed, ~400 MB in a JAX worker that never uses it."""
    import keras

    layers = [_layer_key(layer) for layer in model.layers]
    shapes = [(tuple(v.shape), str(v.dtype), v.trainable) for v in model.variables]
    return f"{keras.backend.backend()}|{unroll}|{model.input_shape}|{shapes}|{layers}"


def _layer_key(layer: object, depth: int = 0) -> str:
    # A layer's kind and its plain settings (units, activations, flags), a cell's too; names left out,
    # since a refit or a reload names the same architecture's layers differently.
    plain = {}
    for name, value in sorted(vars(layer).items()):
        if name.startswith("_") or name == "name":
            continue
        if isinstance(value, (bool, int, float, str, tuple, type(None))):
            plain[name] = value
        elif callable(value) and hasattr(value, "__name__"):
            plain[name] = f"fn:{value.__name__}"
        elif depth < 2 and hasattr(value, "built") and hasattr(value, "weights"):  # a nested cell or layer
            plain[name] = _layer_key(value, depth + 1)
    return f"{type(layer).__module__}.{type(layer).__qualname__}{plain}"


def compiled_errors(
    model: keras.Model, mean: np.ndarray, scale: np.ndarray, *, centre: np.ndarray | None = None, unroll: bool = False
) -> Errors:
    """Raw windows (n, T, F) -> per-feature mean and largest absolute reconstruction error of the scaled
    windows, side by side: (n, 2F). The weights and scaler are arguments of the compiled function, taken
    from ``model`` now (later changes to ``model`` are not seen), so one compiled graph serves every
    model of the same architecture. ``centre``: (F,) 1.0 where a feature's window is taken relative to
    its mean (``Scaler.centred``), default none. ``unroll``: compile an unrolled copy (see ``unrolled``)."""
    import keras

    centre = np.zeros_like(mean, np.float32) if centre is None else np.asarray(centre, np.float32)
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        return eager_errors(model, mean, scale, centre)
    key = architecture_key(model, unroll=unroll)
    with _COMPILED_LOCK:
        compiled = _COMPILED.get(key)
        if compiled is None:
            # Unrolled LSTMs pay on a GPU (see ``unrolled``); on a CPU they score no faster and the
            # larger compiled graphs cost a TensorFlow worker ~50 MB, so there the model stays rolled.
            template = unrolled(model) if unroll else model
            compiled = _COMPILED[key] = _Compiled(template, _compile(template, backend))
            while len(_COMPILED) > _COMPILED_KEEP:
                del _COMPILED[next(iter(_COMPILED))]
    fn = compiled.fn
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.constant(mean), tf.constant(scale), tf.constant(centre), [tf.constant(np.asarray(v)) for v in model.trainable_variables],
                [tf.constant(np.asarray(v)) for v in model.non_trainable_variables]]  # fmt: skip
        return lambda x: fn(tf.convert_to_tensor(x), *args).numpy()
    import jax.numpy as jnp

    jargs = [jnp.asarray(mean), jnp.asarray(scale), jnp.asarray(centre), [jnp.asarray(v) for v in model.trainable_variables],
             [jnp.asarray(v) for v in model.non_trainable_variables]]  # fmt: skip
    return lambda x: np.asarray(fn(x, *jargs))


def _compile(model: keras.Model, backend: str) -> Callable[..., Any]:
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True, reduce_retracing=True)
        def errors_tf(raw: tf.Tensor, mean: tf.Tensor, scale: tf.Tensor, centre: tf.Tensor, trainable: list, frozen: list) -> tf.Tensor:
            x = (raw - mean) / scale
            x = x - centre * tf.reduce_mean(x, axis=1, keepdims=True)
            recon, _ = model.stateless_call(trainable, frozen, x, training=False)
            e = tf.abs(x - recon)
            return tf.concat([tf.reduce_mean(e, axis=1), tf.reduce_max(e, axis=1)], axis=1)

        return errors_tf
    import jax
    import jax.numpy as jnp

    @jax.jit
    def errors_jax(raw: jax.Array, mean: jax.Array, scale: jax.Array, centre: jax.Array, trainable: list, frozen: list) -> jax.Array:
        x = (raw - mean) / scale
        x = x - centre * jnp.mean(x, axis=1, keepdims=True)
        recon, _ = model.stateless_call(trainable, frozen, x, training=False)
        e = jnp.abs(x - recon)
        return jnp.concatenate([jnp.mean(e, axis=1), jnp.max(e, axis=1)], axis=1)

    return errors_jax


def eager_errors(model: keras.Model, mean: np.ndarray, scale: np.ndarray, centre: np.ndarray) -> Errors:
    """torch and others: an uncompiled call, correct but slower."""
    import keras

    def errors_eager(raw: np.ndarray) -> np.ndarray:
        x = (raw - mean) / scale
        x = x - centre * x.mean(axis=1, keepdims=True)
        e = keras.ops.abs(x - model(x, training=False))
        return keras.ops.convert_to_numpy(keras.ops.concatenate([keras.ops.mean(e, axis=1), keras.ops.max(e, axis=1)], axis=1))

    return errors_eager


def backend_and_device() -> tuple[str, str]:
    """The Keras backend, and what it computes on: "cpu", or "gpu: <name>" (e.g. "gpu: NVIDIA H100 80GB HBM3")."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return backend, "cpu" if device.platform == "cpu" else f"{device.platform}: {device.device_kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return backend, "gpu: " + tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return backend, f"gpu: {torch.cuda.get_device_name(0)}"
    return backend, "cpu"
