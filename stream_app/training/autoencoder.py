"""The LSTM autoencoder: T x F window -> LSTM encoder -> repeated code -> LSTM decoder -> T x F."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def build_autoencoder(window: int, n_features: int, units: int = 16, *, seed: int = 0) -> keras.Model:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(window, n_features), name="window")
    code = keras.layers.LSTM(units, name="encoder")(inputs)
    repeated = keras.layers.RepeatVector(window, name="repeat")(code)
    decoded = keras.layers.LSTM(units, return_sequences=True, name="decoder")(repeated)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(n_features), name="reconstruction")(decoded)
    return keras.Model(inputs, outputs, name=f"lstm_ae_t{window}_f{n_features}_u{units}")


def training_jit(requested: bool) -> bool:
    """``jit_compile`` for ``model.compile``: as requested on TensorFlow (where XLA's compile can cost more
    than a small fit gains) and torch, always on JAX, where False means eager, op by op: a refit that takes
    seconds jitted took minutes."""
    import keras

    return True if keras.backend.backend() == "jax" else requested


def flops_per_window(window: int, n_features: int, units: int = 16) -> int:
    """Floating-point operations of one forward pass (2 per multiply-add of the layers' matrix products).

    Each LSTM step multiplies its input and its state by the four gates' kernels; the decoder's input
    is the repeated code (``units`` wide); the dense layer maps each step back to ``n_features``.
    Element-wise gate arithmetic is left out: it is a few percent of the total and not matrix work.
    """
    gates = 4 * units
    encoder = window * 2 * (n_features + units) * gates
    decoder = window * 2 * (units + units) * gates
    dense = window * 2 * units * n_features
    return encoder + decoder + dense
