"""A model per asset group: each group's detector scores only its own devices, and every alert and
device status names the model that made it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_app.contracts import Reading
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.pipeline.routing import DEFAULT_GROUP, GroupRouter, parse_asset_groups
from tests.support.builders import bundle, detector
from stream_app.worker.sinks import RedisSink

T0 = 1_700_000_000_000  # its own clock: the tests' readings are an hour old
NOW = T0 + 3_600_000


def _detector(features: list[str], group: str) -> Detector:
    return detector(bundle(features, group=group, card_fields={"version": "v0001", "asset_group": group}))


@pytest.fixture
def grouped() -> GroupDetector:
    # The default model knows one sensor, the pumps' model two others: a reading routed to the
    # wrong detector would be refused for missing sensors.
    detectors = {DEFAULT_GROUP: _detector(["x"], DEFAULT_GROUP), "pumps": _detector(["p", "q"], "pumps")}
    return GroupDetector(detectors, GroupRouter(parse_asset_groups("pumps=pump-*")))


def _readings(n: int, start: int = 0) -> list[Reading]:
    out = []
    for i in range(start, start + n):
        ts = T0 + i * 1000
        out.append(Reading(device_id="pump-1", ts=ts, values={"p": 0.0, "q": 5.0}))  # q over the line
        out.append(Reading(device_id="mill-1", ts=ts, values={"x": 0.1}))  # quiet
    return out


def test_each_group_scores_its_own_devices_with_its_own_model(grouped: GroupDetector) -> None:
    detection = grouped.process(_readings(6), now_ms=NOW)

    assert detection.refused == []
    assert set(detection.by_model) == {"v0001", "pumps/v0001"}
    assert detection.by_model["v0001"].window_devices == ["mill-1"] * 4
    assert detection.by_model["pumps/v0001"].window_devices == ["pump-1"] * 4
    assert detection.scored == 8
    # The pump's episode opens after 3 windows over its own model's line; the mill stays quiet.
    (alert,) = detection.alerts
    assert (alert.device_id, alert.episode.state, alert.model_version) == ("pump-1", "open", "pumps/v0001")
    assert set(alert.feature_errors) == {"p", "q"} and alert.top_feature == "q"
    statuses = {v: {s.device_id: s.state for s in group} for v, group in detection.statuses().items()}
    assert statuses == {"v0001": {"mill-1": "normal"}, "pumps/v0001": {"pump-1": "anomalous"}}


def test_a_device_in_no_group_is_scored_by_the_default_model(grouped: GroupDetector) -> None:
    # A pump-like device outside the pattern reaches the default model, which lacks its sensors.
    stray = [Reading(device_id="pmp-2", ts=T0, values={"p": 0.0, "q": 0.0})]
    detection = grouped.process(stray, now_ms=NOW)
    (refused,) = detection.refused
    assert "missing sensor(s) x" in refused.reason


def test_counters_merge_across_groups(grouped: GroupDetector) -> None:
    grouped.process(_readings(4), now_ms=NOW)
    again = grouped.process(_readings(2, start=3), now_ms=NOW)  # reading 3 of both devices redelivered
    assert again.duplicates == 2
    assert again.scored == 2


def test_without_groups_one_detector_takes_the_whole_batch() -> None:
    single = GroupDetector.single(_detector(["x"], DEFAULT_GROUP))
    readings = [Reading(device_id=f"d{i % 3}", ts=T0 + i * 1000, values={"x": 0.0}) for i in range(12)]
    detection = single.process(readings, now_ms=NOW)
    assert list(detection.by_model) == ["v0001"] and detection.scored == 6
    assert single.model_versions == {DEFAULT_GROUP: "v0001"}


def test_a_configured_group_needs_a_detector() -> None:
    with pytest.raises(ValueError, match="presses"):
        GroupDetector({DEFAULT_GROUP: _detector(["x"], DEFAULT_GROUP)}, GroupRouter(parse_asset_groups("presses=press-*")))


# --- Redis: each device hash names its own group's model ------------------------------------------


class _Pipeline:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.hashes[key] = mapping

    def expire(self, key: str, seconds: int) -> None:
        pass

    async def execute(self, raise_on_error: bool = True) -> list[object]:
        return []


class _Redis:
    def __init__(self) -> None:
        self.pipe = _Pipeline()

    def register_script(self, script: str) -> object:
        return None  # no alerts are written in this test

    def pipeline(self, transaction: bool = False) -> _Pipeline:
        return self.pipe


async def test_device_hashes_carry_their_own_groups_model_version(grouped: GroupDetector) -> None:
    detection = grouped.process(_readings(2), now_ms=NOW)
    client = _Redis()
    sink = RedisSink(client, "fw")  # type: ignore[arg-type]

    assert await sink.write((), detection.statuses()) is True

    assert client.pipe.hashes["fw:device:pump-1"]["model_version"] == "pumps/v0001"
    assert client.pipe.hashes["fw:device:mill-1"]["model_version"] == "v0001"
