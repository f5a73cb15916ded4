"""The CLI against real services: up/down, replay, alerts recent and tail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from stream_app.lab.embedded import free_port, port_open
from stream_app.config.settings import Settings
from stream_app.worker.sinks import RedisKeys

from tests.support.services import cli_env, wait_scored

pytestmark = pytest.mark.integration


def floorwatch(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_up_creates_topics_and_down_stops_everything(tmp_path: Path) -> None:
    kafka_port, redis_port = free_port(), free_port()
    env = {**os.environ, "FLOORWATCH_STATE_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}"}
    up = floorwatch("up", "--kafka-port", str(kafka_port), "--redis-port", str(redis_port), env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert "sensor-readings[8]" in up.stdout and "anomaly-alerts[4]" in up.stdout
        assert port_open("127.0.0.1", kafka_port) and port_open("127.0.0.1", redis_port)
        again = floorwatch("up", "--kafka-port", str(kafka_port), "--redis-port", str(redis_port), env=env)
        assert again.returncode == 0, again.stderr  # already running: reused, not a second broker
    finally:
        down = floorwatch("down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not port_open("127.0.0.1", kafka_port) and not port_open("127.0.0.1", redis_port)


# Slow (make faults, beside the three-node drills): three JVMs on 2 cores, and the nodes' ports are the
# first free one + 2 and + 4, which are not checked free; it failed once on a fresh clone (2026-11-26).
@pytest.mark.slow
def test_up_broker_kafka_three_nodes_and_down(tmp_path: Path) -> None:
    from tests.support.services import require_kafka

    require_kafka()
    kafka_port, redis_port = free_port(), free_port()
    env = {**os.environ, "FLOORWATCH_STATE_DIR": str(tmp_path)}
    args = ("--broker", "kafka", "--nodes", "3", "--kafka-port", str(kafka_port), "--redis-port", str(redis_port))
    up = floorwatch("up", *args, env=env, timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        assert "3 node(s)" in up.stdout and "sensor-readings[8]" in up.stdout
        assert all(port_open("127.0.0.1", kafka_port + 2 * i) for i in range(3))
    finally:
        down = floorwatch("down", "--wipe", env=env, timeout=120)
    assert down.returncode == 0 and "stopped" in down.stdout, down.stderr
    assert not any(port_open("127.0.0.1", kafka_port + 2 * i) for i in range(3))
    assert not port_open("127.0.0.1", redis_port)


def test_up_broker_kafka_without_jars_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "FLOORWATCH_STATE_DIR": str(tmp_path), "FLOORWATCH_KAFKA_HOME": str(tmp_path)}
    up = floorwatch("up", "--broker", "kafka", "--kafka-port", str(free_port()), env=env)
    assert up.returncode == 1
    assert up.stderr.count("\n") == 1 and "make kafka-jars" in up.stderr, up.stderr


def test_replay_publishes_a_recording_that_the_worker_scores(settings: Settings, worker, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    start = int(time.time()) - 3_600
    rows = ["time;temperature;vibration;motor_rpm;motor_amps;anomaly"]
    for i in range(60):
        t = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + i))
        v = [0.06, 0.075, 0.045, 0.084] + rng.normal(0, 0.001, 4)
        rows.append(f"{t};{v[0]:.5f};{v[1]:.5f};{v[2]:.5f};{v[3]:.5f};0")
    recording = tmp_path / "rec.csv"
    recording.write_text("\n".join(rows) + "\n")

    result = floorwatch("replay", str(recording), "--device", "replayed-1", "--speed", "0", env=cli_env(settings))
    assert result.returncode == 0, result.stderr
    assert "published 60 readings" in result.stdout
    wait_scored(settings, {"replayed-1": (start + 59) * 1000})
    status = redis.Redis.from_url(settings.redis_url_value()).hgetall(RedisKeys(settings.redis_prefix).device("replayed-1"))
    assert status[b"state"] == b"normal" and b"last_score" in status


def test_alerts_recent_and_tail_show_each_alert_once(settings: Settings, worker) -> None:
    from producers.fleet import run_simulation
    from producers.scenarios import Failure, FailureKind, Scenario

    scenario = Scenario(
        devices=3, device_prefix="cli", duration_s=400, seed=5,
        failures=[Failure(device=1, kind=FailureKind.rpm_drop, start_s=150, duration_s=120, magnitude=-0.005)],
    )  # fmt: skip
    stats, _ = run_simulation(settings, scenario, start_ms=int(time.time() * 1000) - 500_000, speed=0)
    wait_scored(settings, stats.last_ts_ms or {})
    env = cli_env(settings)

    recent = floorwatch("alerts", "recent", "--device", "cli-01", "--json", env=env)
    assert recent.returncode == 0, recent.stderr
    from_redis = [json.loads(line) for line in recent.stdout.splitlines()]
    states = [a["episode"]["state"] for a in from_redis]  # newest first
    # One episode: it opens, may escalate (an update per severity crossed), and closes.
    assert states[0] == "closed" and states[-1] == "open" and set(states[1:-1]) <= {"update"}
    assert len({a["episode"]["episode_id"] for a in from_redis}) == 1

    tail = floorwatch("alerts", "tail", "--from-beginning", "--json", "--idle-timeout", "3", env=env)
    assert tail.returncode == 0, tail.stderr
    from_topic = [json.loads(line) for line in tail.stdout.splitlines()]
    ids = [a["alert_id"] for a in from_topic]
    assert len(ids) == len(set(ids))
    assert {a["alert_id"] for a in from_redis} <= set(ids)

    table = floorwatch("alerts", "recent", "--device", "cli-01", env=env)
    assert "cli-01" in table.stdout and "motor_rpm" in table.stdout
