"""A group with no model keeps its readings until it can train one (pipeline/cold_start.py)."""

from __future__ import annotations

from stream_app.contracts import Reading
from stream_app.pipeline.cold_start import ColdStartConfig, Learner
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.pipeline.routing import GroupRouter, parse_asset_groups

NOW = 1_800_000_000_000


def reading(device: str, ts: int, **values: float) -> Reading:
    return Reading(device_id=device, ts=ts, values=values or {"a": 1.0, "b": 2.0})


def test_readings_are_kept_by_device_in_runs_cut_at_gaps() -> None:
    learner = Learner("pumps", ColdStartConfig(min_readings=5, min_span_s=0, max_gap_ms=10_000))
    stamps = [0, 1000, 2000, 60_000, 61_000]  # a silence of 58 s: two runs
    found = learner.process([reading("p-1", NOW - 100_000 + t) for t in stamps], now_ms=NOW)
    assert found.alerts == [] and found.scored == 0 and found.refused == []
    assert found.statuses["p-1"].state == "normal" and found.statuses["p-1"].last_score is None
    assert learner.features == ["a", "b"]
    assert sorted(len(s) for s in learner.series()) == [2, 3]
    assert learner.readings == 5 and learner.ready
    assert learner.model_version == "pumps/learning"


def test_a_reading_without_a_learnt_sensor_is_refused_and_order_is_kept() -> None:
    learner = Learner("default", ColdStartConfig(min_readings=100))
    t = NOW - 10_000
    found = learner.process([reading("d", t), reading("d", t + 1000, a=1.0), reading("d", t + 2000), reading("d", t + 1500),
                             reading("d", t + 2000)], now_ms=NOW)  # fmt: skip
    reasons = [r.reason for r in found.refused]
    assert reasons[0].startswith("missing sensor(s) b") and reasons[1].startswith("out of order")
    assert found.duplicates == 1 and learner.readings == 2 and not learner.ready


def test_ready_needs_the_readings_and_the_stream_time() -> None:
    learner = Learner("default", ColdStartConfig(min_readings=3, min_span_s=60))
    learner.process([reading("d", NOW - 100_000 + i * 1000) for i in range(10)], now_ms=NOW)
    assert learner.readings == 10 and not learner.ready  # 9 s of stream
    learner.process([reading("d", NOW - 20_000)], now_ms=NOW)
    assert learner.ready


def test_memory_is_bounded_by_dropping_the_oldest_runs() -> None:
    learner = Learner("default", ColdStartConfig(min_readings=10, max_readings=10, max_gap_ms=1500))
    for start in range(0, 40, 5):  # runs of 5 readings, 10 s apart
        learner.process([reading("d", NOW - 100_000 + (start * 2 + i) * 1000) for i in range(5)], now_ms=NOW)
    assert learner.readings <= 10 + 5 and len(learner.series()) <= 3


def test_memory_is_bounded_when_devices_never_pause() -> None:
    learner = Learner("default", ColdStartConfig(min_readings=10, max_readings=10))
    learner.process([reading(f"d{i % 2}", NOW - 100_000 + i * 1000) for i in range(40)], now_ms=NOW)
    assert learner.readings == 10 and sum(len(s) for s in learner.series()) == 10


def test_a_learning_group_is_routed_to_its_learner_until_its_first_model_is_installed() -> None:
    router = GroupRouter(parse_asset_groups("pumps=pump-*"))
    learners = {"pumps": Learner("pumps"), "default": Learner("default")}
    fleet = GroupDetector({}, router, learners)
    found = fleet.process([reading("pump-1", NOW - 1000), reading("other-1", NOW - 1000)], now_ms=NOW)
    assert set(found.by_model) == {"pumps/learning", "default/learning"} and found.scored == 0
    assert fleet.unseen(["pump-1"]) == [] and fleet.detector_for("pump-1") is None
    assert learners["pumps"].readings == 1


def test_a_first_model_the_reload_refuses_is_trained_again_with_more_readings(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from stream_app.worker import cold_start

    learner = Learner("default", ColdStartConfig(min_readings=40, min_span_s=0))
    fleet = GroupDetector({}, GroupRouter(()), {"default": learner})
    refused: dict[str, str] = {}
    starter = cold_start.ColdStarter(fleet, tmp_path, refused=refused.get)
    trained: list[int] = []

    def train(self, group, features, series, readings) -> None:  # type: ignore[no-untyped-def]
        trained.append(readings)
        self._promoted[group] = f"v{len(trained):04d}"  # what _train records once it made its model current

    monkeypatch.setattr(cold_start.ColdStarter, "_train", train)
    monkeypatch.setattr(starter._pool, "submit", lambda fn, *args: fn(*args))
    fleet.process([reading("d", NOW - 100_000 + i * 1000) for i in range(40)], now_ms=NOW)
    starter.check()
    starter.check()  # trained, waiting for the reload: nothing new
    assert trained == [40]
    refused["default"] = "v0001"  # the reload could not load it
    starter.check()  # the group learns on
    assert trained == [40]
    fleet.process([reading("d", NOW - 50_000 + i * 1000) for i in range(40)], now_ms=NOW)
    starter.check()
    assert trained == [40, 80]
