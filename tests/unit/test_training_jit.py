"""training_jit(): a refit on JAX is jitted whatever was asked (False there means eager, op by op)."""

from __future__ import annotations

import keras
import pytest

from stream_app.training.autoencoder import training_jit


@pytest.mark.parametrize(("backend", "requested", "expected"), [
    ("jax", False, True), ("jax", True, True), ("tensorflow", False, False), ("tensorflow", True, True), ("torch", False, False),
])  # fmt: skip
def test_jit_follows_the_request_except_on_jax(monkeypatch: pytest.MonkeyPatch, backend: str, requested: bool, expected: bool) -> None:
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    assert training_jit(requested) is expected
