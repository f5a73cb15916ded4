"""Cold start on the embedded services: a worker with no model at all learns one from its stream,
installs it without a restart, and then scores and alerts (pipeline/cold_start.py, worker/cold_start.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import redis

from producers.publish import ReadingPublisher, reading_json
from producers.scenarios import FEATURES
from producers.simulator import normal_training_series
from stream_app.config.settings import Settings
from stream_app.lab.embedded import EmbeddedServices
from stream_app.lab.harness import WorkerProcess, pointed_at
from stream_app.worker.sinks import RedisKeys
from stream_app.worker.topics import ensure_topics
from tests.support.services import redis_alerts, wait_log

pytestmark = pytest.mark.integration


def publish(settings: Settings, rows: dict[str, np.ndarray], start_ms: int) -> None:
    publisher = ReadingPublisher(settings)
    for i in range(len(next(iter(rows.values())))):
        for device, series in rows.items():
            publisher.send(device, reading_json(device, start_ms + i * 1000, dict(zip(FEATURES, map(float, series[i])))))
    publisher.flush()


def test_a_worker_with_no_model_learns_one_from_the_stream_then_finds_a_fault(
    services: EmbeddedServices, tmp_path: Path
) -> None:
    state = services.state()
    assert state is not None
    settings = pointed_at(
        Settings(model_dir=tmp_path / "models", app_id="floorwatch-cold", metrics_port=0, batch_max_wait_s=0.02),
        state, redis_prefix="fwcold", readings_topic="cold-readings", alerts_topic="cold-alerts", dlq_topic="cold-dlq",
        health_topic="cold-health", feedback_topic="cold-feedback", labels_topic="cold-labels",
        cold_start=True, cold_start_readings=900, cold_start_min_span_s=120, log_level="info",
    )  # fmt: skip
    ensure_topics(settings)
    devices = [f"cold-{i}" for i in range(3)]
    series = dict(zip(devices, normal_training_series(3, 700, seed=5)))
    start = int(time.time() * 1000) - 3_600_000
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        wait_log(worker, "default=none yet (learning from the stream)", timeout_s=120)
        publish(settings, {d: s[:400] for d, s in series.items()}, start)  # 1,200 readings over 400 s: enough
        wait_log(worker, "cold start: group default learnt its first model v0001", timeout_s=300)
        wait_log(worker, "model v0001 for group default built", timeout_s=300)  # installed at the next batch
        later = {d: s[400:].copy() for d, s in series.items()}
        later["cold-2"][200:, FEATURES.index("temperature")] += 0.05  # overheating in its last 100 readings
        publish(settings, later, start + 400_000)
        deadline = time.monotonic() + 120
        while not redis_alerts(settings, "cold-2") and time.monotonic() < deadline:
            assert worker.alive(), worker.tail()
            time.sleep(0.5)
        wait_log(worker, "model swapped for group default: default/learning -> v0001", timeout_s=30)
        client = redis.Redis.from_url(settings.redis_url_value())
        key = RedisKeys(settings.redis_prefix).device("cold-0")
        deadline = time.monotonic() + 60  # device hashes are flushed after the batch's alerts
        while (version := client.hget(key, "model_version")) != b"v0001" and time.monotonic() < deadline:
            time.sleep(0.5)
        print(worker.tail())
    faulty = redis_alerts(settings, "cold-2")
    assert faulty and faulty[0].episode.state == "open" and faulty[0].model_version == "v0001", "the fault was not found"
    assert version == b"v0001"
    print("healthy devices' alerts:", [a.device_id for a in redis_alerts(settings, "cold-") if a.device_id != "cold-2"])
