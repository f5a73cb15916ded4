"""Hot reload: a promoted version is built off the event loop and swapped in between two batches,
carrying each device's window and open episode over; a version that cannot serve is refused."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from stream_app.contracts import Reading
from stream_app.pipeline.detector import Detector
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.models.store import ModelBundle, ModelStore, ModelStoreError
from stream_app.worker.reload import ModelReloader
from tests.support.builders import detector, write_version

T0 = 1_700_000_000_000
NOW = T0 + 3_600_000


def _build(model: ModelBundle) -> Detector:
    return detector(model)  # fixed lines: these tests are about what a swap carries over, not about lines learning


def _readings(device: str, start: int, n: int, value: float = 0.5) -> list[Reading]:
    return [Reading(device_id=device, ts=T0 + i * 1000, values={"x": value, "y": value}) for i in range(start, start + n)]


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    s = ModelStore(tmp_path / "models")
    write_version(s, ["x", "y"])
    return s


def _reloader(store: ModelStore, **kwargs: object) -> tuple[ModelReloader, GroupDetector]:
    detector = GroupDetector.single(_build(store.load()))
    return ModelReloader(store.root, detector, _build, **kwargs), detector  # type: ignore[arg-type]


def test_promoted_version_is_swapped_in_between_batches_and_carries_windows(store: ModelStore) -> None:
    reloader, detector = _reloader(store)
    asyncio.run(reloader.poll())  # the first look: nothing new
    first = detector.process(_readings("d1", 0, 5), now_ms=NOW)
    assert first.scored == 3 and set(first.statuses()) == {"v0001"}

    write_version(store, ["x", "y"])  # v0002, same window and features
    asyncio.run(reloader.poll())
    assert detector.detectors["default"].model_version == "v0001", "nothing changes until the next batch"
    assert reloader.apply() == ["default"]

    second = detector.process(_readings("d1", 5, 4), now_ms=NOW)
    # The window carried over: every reading after the swap completes a window, none is unscored.
    assert second.scored == 4
    assert set(second.statuses()) == {"v0002"}


def test_open_episode_spans_the_swap_and_the_closing_alert_names_the_new_version(store: ModelStore) -> None:
    reloader, detector = _reloader(store)
    asyncio.run(reloader.poll())
    opened = detector.process(_readings("d1", 0, 6, value=5.0), now_ms=NOW)  # over the line
    assert [a.episode.state for a in opened.alerts] == ["open"]
    assert opened.alerts[0].model_version == "v0001"

    write_version(store, ["x", "y"])
    asyncio.run(reloader.poll())
    reloader.apply()
    rest = detector.process(_readings("d1", 6, 40, value=0.1), now_ms=NOW)
    assert [a.episode.state for a in rest.alerts] == ["closed"]
    closed = rest.alerts[0]
    assert closed.episode.episode_id == opened.alerts[0].episode.episode_id, "one failure, one episode"
    assert closed.model_version == "v0002"


def test_other_window_length_rebuilds_windows_but_keeps_episodes(store: ModelStore) -> None:
    reloader, detector = _reloader(store)
    asyncio.run(reloader.poll())
    detector.process(_readings("d1", 0, 6, value=5.0), now_ms=NOW)
    write_version(store, ["x", "y"], window=4)
    asyncio.run(reloader.poll())
    reloader.apply()
    new = detector.detectors["default"]
    assert new.model_version == "v0002" and new.episodes.is_open("d1")
    after = detector.process(_readings("d1", 6, 4), now_ms=NOW)
    assert after.scored == 1  # the window refilled: T - 1 = 3 readings unscored once


def _promote_broken(store: ModelStore, file: str, text: str) -> ModelReloader:
    """A worker serving v0001 polls after v0002 (with ``file`` replaced by ``text``) was promoted; it applies
    nothing and still serves v0001."""
    reloader, detector = _reloader(store)
    asyncio.run(reloader.poll())
    version = write_version(store, ["x", "y"], promote=False)
    (store.root / version / file).write_text(text)
    store.promote(version)
    asyncio.run(reloader.poll())
    assert reloader.apply() == []
    assert detector.detectors["default"].model_version == "v0001"
    return reloader


def test_corrupt_version_is_refused_and_the_worker_keeps_its_model(store: ModelStore, caplog: pytest.LogCaptureFixture) -> None:
    reloader = _promote_broken(store, "thresholds.json", "{ truncated")
    assert "v0002" in caplog.text and "refused" in caplog.text and "still serving v0001" in caplog.text
    assert [e.action for e in store.audit.entries()][-1] == "refused"
    # Refused once: the next polls do not try again until the pointer changes.
    asyncio.run(reloader.poll())
    assert caplog.text.count("refused") == 1


def test_a_scaler_centring_more_features_than_the_model_has_is_refused(store: ModelStore, caplog: pytest.LogCaptureFixture) -> None:
    _promote_broken(store, "scaler.json", '{"mean": [0, 0], "scale": [1, 1], "centred": [true, false, true]}')
    assert "scaler centres 3 features, card 2" in caplog.text


def test_unloadable_weights_are_refused(store: ModelStore, caplog: pytest.LogCaptureFixture) -> None:
    def broken(bundle: ModelBundle) -> Detector:
        raise ValueError("File not found: filepath=model.keras")

    detector = GroupDetector.single(_build(store.load()))
    reloader = ModelReloader(store.root, detector, broken)
    asyncio.run(reloader.poll())
    write_version(store, ["x", "y"])
    asyncio.run(reloader.poll())
    assert reloader.apply() == [] and detector.detectors["default"].model_version == "v0001"
    assert "cannot be loaded: ValueError" in caplog.text


def test_version_needing_a_sensor_the_fleet_does_not_send_is_refused(store: ModelStore, caplog: pytest.LogCaptureFixture) -> None:
    reloader, detector = _reloader(store)
    asyncio.run(reloader.poll())
    batch = _readings("d1", 0, 5)
    reloader.observe(batch)
    detector.process(batch, now_ms=NOW)
    write_version(store, ["x", "pressure"])
    asyncio.run(reloader.poll())
    assert reloader.apply() == []
    assert "needs sensor(s) pressure" in caplog.text


def test_pinned_worker_keeps_its_default_model(store: ModelStore) -> None:
    reloader, detector = _reloader(store, pinned_default=True)
    asyncio.run(reloader.poll())
    write_version(store, ["x", "y"])
    asyncio.run(reloader.poll())
    assert reloader.apply() == []


# --- the store: rollback, history, crash safety ---------------------------------------------


def test_rollback_walks_back_the_promotions_and_history_records_them(store: ModelStore) -> None:
    write_version(store, ["x", "y"])  # v0002 current
    write_version(store, ["x", "y"], promote=False)  # v0003
    store.promote("v0003")
    assert store.rollback() == ("v0003", "v0002")
    assert store.rollback() == ("v0002", "v0001")
    with pytest.raises(ModelStoreError, match="nothing to roll back to"):
        store.rollback()
    actions = [(e.action, e.version, e.previous) for e in store.audit.entries()]
    assert actions[-2:] == [("rollback", "v0002", "v0003"), ("rollback", "v0001", "v0002")]


def test_a_crash_mid_promote_leaves_current_naming_a_complete_version(store: ModelStore) -> None:
    # What a crash leaves behind: a half-written pointer file and a half-copied version folder.
    (store.root / ".CURRENT.tmp").write_text("v00")
    (store.root / ".staging-abc").mkdir()
    (store.root / ".staging-abc" / "card.json").write_text("{")
    assert store.current() == "v0001"
    assert store.versions() == ["v0001"]
    store.load()  # complete: every file readable
    # ... and the next promote simply overwrites the leftover.
    write_version(store, ["x", "y"])
    assert store.current() == "v0002" and not (store.root / ".CURRENT.tmp").exists()


def test_pointer_stamp_changes_on_promote_only(store: ModelStore) -> None:
    before = store.pointer_stamp()
    assert store.pointer_stamp() == before
    os.utime(store.root / "v0001")  # touching a version is not a promotion
    assert store.pointer_stamp() == before
    write_version(store, ["x", "y"])
    assert store.pointer_stamp() != before


def _floorwatch(model_dir: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    import subprocess
    import sys

    env = {"PATH": os.environ.get("PATH", ""), "FLOORWATCH_MODEL_DIR": str(model_dir), "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "stream_app", *args], env=env, capture_output=True, text=True, timeout=120)


def test_cli_promote_rollback_and_history(store: ModelStore) -> None:
    write_version(store, ["x", "y"], promote=False)
    done = _floorwatch(store.root, "models", "promote", "v0002")
    assert done.returncode == 0 and "v0002 is now current (was v0001)" in done.stdout, done.stderr
    done = _floorwatch(store.root, "models", "rollback")
    assert done.returncode == 0 and "rolled back v0002 -> v0001" in done.stdout, done.stderr
    assert store.current() == "v0001"
    again = _floorwatch(store.root, "models", "rollback")
    assert again.returncode == 1 and again.stderr.startswith("error: nothing to roll back to: v0001 is the oldest version")
    history = _floorwatch(store.root, "models", "history")
    assert history.returncode == 0 and "rollback" in history.stdout and "promote" in history.stdout
    unknown = _floorwatch(store.root, "models", "shadow", "v0009")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1 and "unknown model version 'v0009'" in unknown.stderr


def test_a_detector_offered_directly_is_installed_at_the_next_batch(store: ModelStore) -> None:
    reloader, detector = _reloader(store)
    detector.process(_readings("d1", 0, 5), now_ms=NOW)
    refit = _build(store.load())
    reloader.offer("default", refit)
    assert reloader.apply() == ["default"] and detector.detectors["default"] is refit
    assert detector.process(_readings("d1", 5, 2), now_ms=NOW).scored == 2  # windows carried over
