"""Wandering levels: which features a model reads for their shape (windows relative to their mean), and
that training, scoring and refits all read them the same way."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from stream_app.models.store import ModelBundle, ModelStore, Scaler
from stream_app.pipeline.scorer import Scorer
from stream_app.training.wander import wandering

RNG = np.random.default_rng(7)


def ar(phi: float, n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(n)
    e = rng.normal(0, 1, n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def test_a_random_walk_wanders_and_processes_that_return_do_not() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    t = np.arange(n)
    columns = {
        "walk": np.cumsum(rng.normal(0, 1, n)),
        "white": rng.normal(5, 1, n),
        "ar09": ar(0.9, n, rng),
        "daily cycle 1/min, noisy": 3 * np.sin(2 * np.pi * t / 1440) + rng.normal(0, 1, n),
        "constant": np.full(n, 2.0),
    }
    series = np.stack(list(columns.values()), axis=1)
    assert wandering([series]) == [True, False, False, False, False]


def test_wandering_pools_series_and_ignores_ones_too_short_to_say() -> None:
    rng = np.random.default_rng(2)
    walks = [np.cumsum(rng.normal(0, 1, (400, 1)), axis=0) for _ in range(3)]
    assert wandering(walks) == [True]
    assert wandering([walks[0][:40]]) == [False]  # shorter than two lags
    assert wandering([]) == []


def test_only_windows_of_centred_features_are_centred() -> None:
    scaler = Scaler(mean=[1.0, 1.0], scale=[2.0, 2.0], centred=[True, False])
    windows = np.array([[[3.0, 3.0], [5.0, 5.0]]], np.float32)  # (1, T=2, F=2)
    out = scaler.transform(windows)
    np.testing.assert_allclose(out[0, :, 0], [-0.5, 0.5])  # scaled 1, 2 -> relative to their mean 1.5
    np.testing.assert_allclose(out[0, :, 1], [1.0, 2.0])
    np.testing.assert_allclose(scaler.transform(windows[0]), [[1.0, 1.0], [2.0, 2.0]])  # readings: not centred


def test_a_scaler_saved_before_centring_reads_as_none_centred() -> None:
    old = Scaler.model_validate_json('{"mean": [0.0, 1.0], "scale": [1.0, 1.0]}')
    assert old.centred == [] and old.centre_mask().tolist() == [0.0, 0.0]
    windows = RNG.normal(0, 1, (3, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(old.transform(windows), windows - np.array([0.0, 1.0], np.float32))


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path) -> ModelBundle:
    return ModelStore(tiny_model_dir).load()


def test_the_compiled_scorer_centres_as_the_scaler_does_and_ignores_a_centred_features_level(trained: ModelBundle) -> None:
    f = len(trained.card.features)
    centred = trained.scaler.model_copy(update={"centred": [True] + [False] * (f - 1)})
    scorer = Scorer(trained.load_keras(), centred, reference=trained.thresholds.feature_reference, max_batch=16)
    windows = RNG.normal(10.0, 2.0, (5, trained.card.window, f)).astype(np.float32)

    model = trained.load_keras()
    x = centred.transform(windows)
    expected = np.abs(x - np.asarray(model(x, training=False))).mean(axis=1)
    np.testing.assert_allclose(scorer.raw_errors(windows), expected, rtol=1e-4, atol=1e-5)

    moved = windows.copy()
    moved[:, :, 0] += 1000.0  # the centred feature somewhere else entirely: the same shape, the same errors
    np.testing.assert_allclose(scorer.raw_errors(moved), scorer.raw_errors(windows), rtol=1e-3, atol=1e-4)
    moved[:, :, 1] += 1000.0  # a level feature moved: not the same
    assert not np.allclose(scorer.raw_errors(moved), scorer.raw_errors(windows), rtol=1e-3)


def test_training_on_a_random_walk_centres_it_and_a_fresh_refit_keeps_that() -> None:
    from stream_app.training.fit import TrainingConfig, TrainingData
    from stream_app.training.fit import windows_of
    from stream_app.training.refit import refit_scaler

    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(0, 1, 2000))
    series = np.stack([walk, rng.normal(0, 1, 2000)], axis=1).astype(np.float32)
    # A lone wandering sensor is centred; beside another sensor, its level relative to the other's counts.
    assert TrainingData.prepare([series[:, :1]], TrainingConfig(window=8)).scaler.centred == [True]
    data = TrainingData.prepare([series], TrainingConfig(window=8))
    assert data.scaler.centred == []  # none centred: written as before centring existed
    data = dataclasses.replace(data, scaler=data.scaler.model_copy(update={"centred": [True, False]}))
    # A wandering level far from training's is not "moved" (the model reads its shape): the refit fine-tunes...
    later = np.stack([walk[-500:] + 50 * data.scaler.scale[0], rng.normal(0, 1, 500)], axis=1).astype(np.float32)
    assert refit_scaler(data.scaler, windows_of(later, 8)) == (data.scaler, False)
    # ...a level feature far from it is: the refit starts afresh on a new scaler, the same features centred.
    later[:, 1] += 10
    scaler, fresh = refit_scaler(data.scaler, windows_of(later, 8))
    assert fresh and scaler.centred == [True, False] and scaler.mean != data.scaler.mean


def test_evaluate_finds_a_spike_on_a_random_walk_far_from_its_training_levels_and_says_why() -> None:
    from stream_app.lab.evaluate import EvaluateOptions, evaluate_per_series
    from stream_app.lab.skab import LabelledSeries
    from stream_app.training.fit import TrainingConfig

    rng = np.random.default_rng(5)
    n, spike = 2400, 2000
    values = np.cumsum(rng.normal(0, 1, n))
    values[spike] += 12.0
    labels = np.zeros(n, bool)
    labels[spike] = True
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    series = LabelledSeries("walk", ["x"], ts, values[:, None].astype(np.float32), labels, train_rows=400)
    options = EvaluateOptions(training=TrainingConfig(window=10, units=8, epochs=10, jit_compile=False))
    report, (trace,) = evaluate_per_series([series], options, source="t")

    assert "walk: its level wanders like a random walk; the model reads its windows for their shape" in report.warnings
    assert abs(values[400:] - values[:400].mean()).max() > 5 * values[:400].std()  # far from what training saw
    assert trace.opened is not None
    opened = np.flatnonzero(trace.opened)
    assert any(spike - 400 <= k <= spike - 400 + 10 for k in opened)  # found within a window of it
    assert len(opened) <= 3
