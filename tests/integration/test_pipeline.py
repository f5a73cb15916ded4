"""The real pipeline: embedded broker + Redis + a worker process, driven through Kafka."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from producers.fleet import run_simulation
from producers.publish import ReadingPublisher, reading_json
from producers.scenarios import Failure, FailureKind, Scenario
from stream_app.config.settings import Settings

from tests.support.services import redis_alerts, topic_alerts, topic_messages, wait_scored

pytestmark = pytest.mark.integration


def _run(settings: Settings, prefix: str, failures: list[Failure], *, devices: int = 6, batch: int = 1):
    scenario = Scenario(devices=devices, device_prefix=prefix, duration_s=600, seed=11, failures=failures)
    start_ms = int(time.time() * 1000) - 700_000
    stats, sim = run_simulation(settings, scenario, start_ms=start_ms, speed=0, batch=batch)
    wait_scored(settings, stats.last_ts_ms or {})
    return sim


def _open_episodes(alerts):
    return {(a.device_id, a.episode.episode_id) for a in alerts if a.episode.state == "open"}


def test_one_failure_gives_exactly_one_episode(settings: Settings, worker) -> None:
    failure = Failure(device=2, kind=FailureKind.power_surge, start_s=200, duration_s=150, magnitude=0.009)
    sim = _run(settings, "one", [failure])
    failed = sim.device_ids[2]

    in_redis = redis_alerts(settings, "one-")
    on_topic = {a.alert_id: a for a in topic_alerts(settings, "one-")}.values()  # consumers drop duplicate ids
    for alerts in (in_redis, list(on_topic)):
        episodes = _open_episodes(alerts)
        assert {device for device, _ in episodes} == {failed}, episodes
        assert len(episodes) == 1
        opened = next(a for a in alerts if a.episode.state == "open")
        label = sim.labels()[0]
        assert label.start <= int(time.mktime(time.strptime(opened.window_end[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone) * 1000 <= label.end + 20_000
        assert opened.top_feature == "motor_amps"
    # Redis holds each alert once even if the worker wrote it twice.
    assert len({a.alert_id for a in in_redis}) == len(in_redis)


def test_normal_traffic_gives_no_alert(settings: Settings, worker) -> None:
    _run(settings, "calm", [], devices=8, batch=20)  # batched form, too
    assert redis_alerts(settings, "calm-") == []
    assert topic_alerts(settings, "calm-") == []


def test_malformed_messages_go_to_the_dlq_while_scoring_goes_on(settings: Settings, worker) -> None:
    publisher = ReadingPublisher(settings)
    good = {"temperature": 0.06, "vibration": 0.075, "motor_rpm": 0.045, "motor_amps": 0.084}
    bad = {
        b"\xff\xfe not utf-8": "not valid JSON",
        b'{"device_id": "dlq-1", "ts": 1, "values": {"temperature": "warm"}}': "values.temperature",
        b'{"device_id": "dlq-1", "ts": 1}': "values: Field required",
        b'["a list"]': "expected a JSON object",
        b'{"device_id": "dlq-1", "ts": 1, "values": {"temperature": 0.06}}': "missing sensor(s)",
    }
    start = int(time.time() * 1000) - 100_000
    rng = np.random.default_rng(0)
    for i in range(40):
        # Noisy like a real sensor: a constant signal would (rightly) fail the stuck-sensor check.
        noisy = {k: v + float(rng.normal(0, 0.0005)) for k, v in good.items()}
        publisher.send("dlq-1", reading_json("dlq-1", start + i * 1000, noisy))
        if i < len(bad):
            publisher.send("dlq-1", list(bad)[i])
    publisher.flush()
    wait_scored(settings, {"dlq-1": start + 39_000})

    letters = [orjson.loads(v) for v in topic_messages(settings, settings.dlq_topic)]
    ours = [l for l in letters if l["key"] == "dlq-1"]
    assert len(ours) == len(bad)
    for payload, reason in bad.items():
        match = [l for l in ours if reason in l["reason"]]
        assert match, (reason, [l["reason"] for l in ours])
        letter = match[0]
        assert letter["source_topic"] == settings.readings_topic and letter["source_offset"] is not None
        if letter["original"] is not None:  # the message's own bytes, the detector's refusals too
            assert letter["original"].encode() == payload
    assert redis_alerts(settings, "dlq-") == []
