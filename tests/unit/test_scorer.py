"""The scorer: scaled, padded, compiled scoring that gives every window the same score at any batch size.

It scores the session's tiny model (``tiny_model_dir``, trained once for all tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_app.models.store import ModelBundle, ModelStore
from stream_app.pipeline.scorer import Scorer, pad_sizes, unrolled


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path) -> ModelBundle:
    return ModelStore(tiny_model_dir).load()


@pytest.fixture(scope="module")
def scorer(trained: ModelBundle) -> Scorer:
    return Scorer.from_bundle(trained, max_batch=16)


def normal_windows(n: int, seed: int, bundle: ModelBundle) -> np.ndarray:
    shape = (n, bundle.card.window, len(bundle.card.features))
    return np.random.default_rng(seed).normal(10.0, 2.0, size=shape).astype(np.float32)


def test_pad_sizes() -> None:
    assert pad_sizes(16) == [1, 8, 16]
    assert pad_sizes(1024) == [1, 8, 64, 512, 1024]
    assert pad_sizes(1) == [1]


def expected_scores(bundle: ModelBundle, windows: np.ndarray) -> np.ndarray:
    """The definition, computed directly with the Keras model: no padding, no compilation."""
    model = bundle.load_keras()
    scaled = bundle.scaler.transform(windows)
    raw = np.abs(scaled - np.asarray(model(scaled, training=False))).mean(axis=1)
    return (raw / np.asarray(bundle.thresholds.feature_reference)).max(axis=1)


@pytest.mark.parametrize("n", [5, 8, 16, 40], ids=["padded", "exact-pad-size", "max-batch", "chunked"])
def test_batch_scores_equal_one_at_a_time_scores(trained: ModelBundle, scorer: Scorer, n: int) -> None:
    windows = normal_windows(n, seed=n, bundle=trained)

    together = scorer.score(windows)
    one_by_one = np.concatenate([scorer.score(windows[i : i + 1]).score for i in range(n)])

    assert together.score.shape == (n,)
    assert together.feature_errors.shape == (n, len(trained.card.features))
    np.testing.assert_allclose(together.score, one_by_one, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(together.score, expected_scores(trained, windows), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(together.score, together.feature_errors.max(axis=1))


def test_scores_do_not_depend_on_the_other_windows_in_the_batch(trained: ModelBundle, scorer: Scorer) -> None:
    windows = normal_windows(12, seed=3, bundle=trained)
    alone = scorer.score(windows[:3]).score
    # The same three windows next to wildly different ones, in a batch that needs padding.
    noisy = np.concatenate([windows[:3], normal_windows(9, seed=4, bundle=trained) * 100])
    np.testing.assert_allclose(scorer.score(noisy).score[:3], alone, rtol=1e-5, atol=1e-5)


def test_scorer_uses_the_saved_reference(trained: ModelBundle, scorer: Scorer) -> None:
    windows = normal_windows(7, seed=9, bundle=trained)
    raw = scorer.raw_errors(windows)
    reference = np.asarray(trained.thresholds.feature_reference, np.float32)
    np.testing.assert_allclose(scorer.score(windows).feature_errors, raw / reference, rtol=1e-6)


def test_warm_compiles_every_pad_size(trained: ModelBundle) -> None:
    scorer = Scorer.from_bundle(trained, max_batch=16)
    compiled, shapes = scorer._errors, []
    scorer._errors = lambda batch: shapes.append(batch.shape) or compiled(batch)
    scorer.warm()
    assert shapes == [(size, scorer.window, scorer.n_features) for size in (1, 8, 16)]
    assert (scorer.window, scorer.n_features) == (trained.card.window, len(trained.card.features))


def test_scorer_unrolls_a_copy_with_the_same_outputs(trained: ModelBundle) -> None:
    import keras


    model = trained.load_keras()
    copy = unrolled(model)
    rnns = lambda m: [layer for layer in m.layers if isinstance(layer, keras.layers.RNN)]  # noqa: E731
    assert rnns(copy) and all(layer.unroll for layer in rnns(copy))
    assert not any(layer.unroll for layer in rnns(model))  # the caller's model is left as it was
    x = np.random.default_rng(1).normal(size=(5, *model.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_scorer_compiles_the_given_sizes(trained: ModelBundle) -> None:
    bundle = trained
    scorer = Scorer(bundle.load_keras(), bundle.scaler, max_batch=16, sizes=[3, 16, 40, 0])
    assert scorer.sizes == [3, 16]
    windows = np.random.default_rng(0).normal(size=(20, scorer.window, scorer.n_features)).astype(np.float32)
    default = Scorer(bundle.load_keras(), bundle.scaler, max_batch=16)
    np.testing.assert_allclose(scorer.raw_errors(windows), default.raw_errors(windows), rtol=1e-5)


def test_a_model_of_the_same_architecture_reuses_the_compiled_graph_with_its_own_weights(trained: ModelBundle) -> None:
    """What makes a hot reload cheap: the new version's scorer compiles nothing, and scores with its weights."""
    from stream_app.pipeline import scorer as scorer_module

    first = Scorer.from_bundle(trained, max_batch=16)
    first.warm()
    compiled = dict(scorer_module._COMPILED)
    other = trained.load_keras()
    other.set_weights([w * 1.5 for w in other.get_weights()])
    second = Scorer(other, trained.scaler, max_batch=16)
    second.warm()
    assert scorer_module._COMPILED == compiled  # the same compiled function, nothing new traced

    windows = normal_windows(9, seed=5, bundle=trained)
    scaled = trained.scaler.transform(windows)
    own = np.abs(scaled - np.asarray(other(scaled, training=False))).mean(axis=1)
    np.testing.assert_allclose(second.raw_errors(windows), own, rtol=1e-5, atol=1e-6)
    # ... and the first scorer still scores with the first weights.
    np.testing.assert_allclose(first.score(windows).score, expected_scores(trained, windows), rtol=1e-5, atol=1e-5)


def test_a_model_of_another_architecture_compiles_its_own_graph(trained: ModelBundle) -> None:
    from stream_app.pipeline import scorer as scorer_module
    from stream_app.training.autoencoder import build_autoencoder

    Scorer.from_bundle(trained, max_batch=16).warm()
    before = set(scorer_module._COMPILED)
    model = build_autoencoder(trained.card.window, len(trained.card.features), trained.card.units * 2, seed=1)
    scorer = Scorer(model, trained.scaler, max_batch=16)
    assert set(scorer_module._COMPILED) - before, "a new architecture gets its own compiled function"
    windows = normal_windows(4, seed=6, bundle=trained)
    scaled = trained.scaler.transform(windows)
    np.testing.assert_allclose(scorer.raw_errors(windows), np.abs(scaled - np.asarray(model(scaled, training=False))).mean(axis=1),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
