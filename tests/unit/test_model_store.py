"""Training writes versioned models; the store serves them.

One tiny model is trained once for this file (a few seconds): window 4, 4 units, one epoch.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from stream_app.models.store import ModelBundle, ModelStore, ModelStoreError, Scaler, stored_groups
from stream_app.training.fit import TrainingConfig, _split, train

FEATURES = ["a", "b"]
CONFIG = TrainingConfig(window=4, units=4, epochs=1, batch_size=64)
N_SERIES, LENGTH = 3, 300
TRAIN_ROWS = int(LENGTH * (1 - CONFIG.validation_share))  # 240: the first 80% of each series


@pytest.fixture(scope="module")
def series() -> list[np.ndarray]:
    rng = np.random.default_rng(42)
    return [rng.normal(10.0, 2.0, size=(LENGTH, len(FEATURES))).astype(np.float32) for _ in range(N_SERIES)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, series: list[np.ndarray]) -> ModelBundle:
    """The first version in a fresh store (trained once for the whole file)."""
    store = ModelStore(tmp_path_factory.mktemp("models"))
    return train(series, FEATURES, store, CONFIG, source="test")


@pytest.fixture
def store_copy(trained: ModelBundle, tmp_path: Path) -> ModelStore:
    """A private copy of the trained store, for tests that add versions."""
    root = tmp_path / "models"
    shutil.copytree(trained.path.parent, root)
    return ModelStore(root)


# --- versions and the CURRENT pointer ---------------------------------------------------------


def test_first_training_writes_v0001_and_makes_it_current(trained: ModelBundle) -> None:
    store = ModelStore(trained.path.parent)
    assert trained.version == "v0001"
    assert store.versions() == ["v0001"]
    assert store.current() == "v0001"
    assert (trained.path.parent / "CURRENT").read_text().strip() == "v0001"
    for name in ("model.keras", "card.json", "scaler.json", "thresholds.json"):
        assert (trained.path / name).is_file()
    # No staging folder is left behind.
    assert [p.name for p in trained.path.parent.iterdir() if p.name.startswith(".")] == []


def test_second_training_without_promote_adds_v0002_but_keeps_current(
    store_copy: ModelStore, series: list[np.ndarray]
) -> None:
    bundle = train(series, FEATURES, store_copy, CONFIG, source="test", promote=False)

    assert bundle.version == "v0002"
    assert store_copy.versions() == ["v0001", "v0002"]
    assert store_copy.current() == "v0001"
    assert store_copy.load().version == "v0001"
    assert store_copy.load("v0002").version == "v0002"
    assert [c.version for c in store_copy.cards()] == ["v0001", "v0002"]

    store_copy.promote("v0002")
    assert store_copy.current() == "v0002"
    assert store_copy.load().version == "v0002"


def test_save_with_promote_makes_the_new_version_current(store_copy: ModelStore) -> None:
    old = store_copy.load()

    new = store_copy.save(old.load_keras(), old.card, old.scaler, old.thresholds, promote=True)

    assert new.version == "v0002"
    assert new.card.version == "v0002"
    assert store_copy.versions() == ["v0001", "v0002"]
    assert store_copy.current() == "v0002"


def test_promote_of_an_unknown_version_raises(store_copy: ModelStore) -> None:
    with pytest.raises(ModelStoreError, match="v0042"):
        store_copy.promote("v0042")
    assert store_copy.current() == "v0001"


def test_load_of_an_unknown_version_raises(store_copy: ModelStore) -> None:
    with pytest.raises(ModelStoreError, match="unknown model version"):
        store_copy.load("v0042")


def test_load_without_any_model_tells_the_user_to_train(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "nothing-here")
    assert store.versions() == []
    assert store.current() is None
    with pytest.raises(ModelStoreError, match="floorwatch train"):
        store.load()


def test_current_pointing_at_a_missing_version_counts_as_no_model(store_copy: ModelStore) -> None:
    (store_copy.root / "CURRENT").write_text("v0009\n")
    assert store_copy.current() is None
    with pytest.raises(ModelStoreError, match="floorwatch train"):
        store_copy.load()


def test_a_corrupt_file_is_a_model_store_error(store_copy: ModelStore) -> None:
    (store_copy.root / "v0001" / "scaler.json").write_text("{not json")
    with pytest.raises(ModelStoreError, match="scaler.json"):
        store_copy.load()


def test_a_group_store_numbers_its_own_versions_and_stamps_its_group(store_copy: ModelStore) -> None:
    old = store_copy.load()
    pumps = ModelStore.for_group(store_copy.root, "pumps")

    saved = pumps.save(old.load_keras(), old.card, old.scaler, old.thresholds)
    loaded = pumps.load()

    assert saved.path == store_copy.root / "groups" / "pumps" / "v0001"
    assert (loaded.card.version, loaded.card.asset_group, loaded.group) == ("v0001", "pumps", "pumps")
    assert loaded.version == "pumps/v0001"  # what alerts and Redis report: unambiguous across groups
    # The default model is untouched, and still reports the bare version.
    assert store_copy.versions() == ["v0001"] and store_copy.current() == "v0001"
    assert store_copy.load().version == "v0001" and store_copy.load().card.asset_group == "default"
    assert stored_groups(store_copy.root) == ["pumps"]


# --- the scaler: fitted on training data only, applied as saved --------------------------------


def test_scaler_is_fitted_on_the_training_part_only(trained: ModelBundle, series: list[np.ndarray]) -> None:
    train_parts, val_parts = _split(series, CONFIG)
    assert [len(p) for p in train_parts] == [TRAIN_ROWS] * N_SERIES
    assert [len(p) for p in val_parts] == [LENGTH - TRAIN_ROWS] * N_SERIES

    training_rows = np.concatenate([s[:TRAIN_ROWS] for s in series]).astype(np.float64)
    np.testing.assert_allclose(trained.scaler.mean, training_rows.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(trained.scaler.scale, training_rows.std(axis=0), rtol=1e-6)

    # ...and not on all of it: the held-out rows would have moved the mean.
    all_rows = np.concatenate(series).astype(np.float64)
    assert np.abs(np.asarray(trained.scaler.mean) - all_rows.mean(axis=0)).max() > 1e-4


def test_saved_scaler_round_trips(trained: ModelBundle) -> None:
    reloaded = ModelStore(trained.path.parent).load()
    assert reloaded.scaler == trained.scaler
    assert reloaded.thresholds == trained.thresholds


def test_transform_uses_the_saved_values_and_never_refits(trained: ModelBundle) -> None:
    scaler = trained.scaler
    mean, scale = np.asarray(scaler.mean), np.asarray(scaler.scale)

    at_mean = scaler.transform(np.full((50, 2), 10.0, np.float32))
    np.testing.assert_allclose(at_mean, np.broadcast_to((10.0 - mean) / scale, (50, 2)), rtol=1e-5, atol=1e-6)
    assert np.abs(at_mean).max() < 0.1  # 10 is about the training mean

    # Data around 50 stays far from 0: refitting would have centred it.
    hot = np.random.default_rng(1).normal(50.0, 2.0, (200, 2)).astype(np.float32)
    shifted = scaler.transform(hot)
    assert shifted.dtype == np.float32
    assert shifted.mean(axis=0) == pytest.approx((hot.mean(axis=0) - mean) / scale, rel=1e-5)
    assert shifted.mean() > 15


def test_scaler_transforms_windows_too() -> None:
    scaler = Scaler(mean=[1.0, 10.0], scale=[2.0, 5.0])
    windows = np.array([[[3.0, 20.0], [1.0, 10.0]]], np.float32)  # (1, T=2, F=2)
    np.testing.assert_array_equal(scaler.transform(windows), [[[1.0, 2.0], [0.0, 0.0]]])


# --- the model card ---------------------------------------------------------------------------


def test_card_describes_the_model_and_its_training(trained: ModelBundle) -> None:
    card = trained.card
    assert card.version == "v0001"
    assert card.features == FEATURES
    assert (card.window, card.units) == (4, 4)
    assert card.detector == "lstm-autoencoder"
    assert datetime.fromisoformat(card.created_at).tzinfo is not None

    t = card.training
    assert t.source == "test"
    assert (t.series, t.readings, t.epochs) == (N_SERIES, N_SERIES * LENGTH, 1)
    # Training windows: stride 2 over 240 rows -> ceil(237 / 2) = 119 per series.
    assert t.train_windows == N_SERIES * 119
    # Validation windows: stride 1 over 60 rows -> 57 per series.
    assert t.validation_windows == N_SERIES * 57
    assert set(t.feature_mean) == set(t.feature_std) == set(FEATURES)
    np.testing.assert_allclose(list(t.feature_mean.values()), trained.scaler.mean, rtol=1e-5)

    v = card.validation
    for value in (v.train_loss, v.validation_loss, v.validation_score_p50, v.validation_score_p99):
        assert np.isfinite(value) and value >= 0
    assert v.validation_score_p50 <= v.validation_score_p99 <= v.validation_score_max
    assert 0.0 <= v.validation_windows_over_threshold <= 1.0
    assert card.notes == {"train_stride": CONFIG.train_stride, "validation_share": CONFIG.validation_share}


def test_thresholds_are_saved_with_the_model(trained: ModelBundle) -> None:
    th = trained.thresholds
    assert th.threshold > 0
    assert len(th.feature_reference) == len(FEATURES)
    assert set(th.feature_envelope) == set(FEATURES)
