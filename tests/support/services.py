"""Helpers for tests on real services: wait for the worker, read what it wrote to topics and Redis."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import redis

from producers.publish import ReadingPublisher, reading_json

from stream_app.contracts import Alert, iso_ms
from stream_app.config.settings import Settings
from stream_app.lab.harness import WorkerProcess
from stream_app.worker.sinks import RedisKeys
from stream_app.worker.topics import read_topic

# One normal reading (the simulator's idle levels): probes that wake a worker without alerting.
NORMAL = {"temperature": 0.06, "vibration": 0.075, "motor_rpm": 0.045, "motor_amps": 0.084}


def probe_until_scored(settings: Settings, worker: WorkerProcess, device: str = "probe-0", timeout_s: float = 120) -> None:
    """Send a normal reading every half second until the worker has scored one (its device hash shows it).

    Judged by the hash's last reading time, not by the hash existing: a hash left in Redis by an earlier
    worker under the same prefix would otherwise pass for this one scoring."""
    publisher = ReadingPublisher(settings)
    client = redis.Redis.from_url(settings.redis_url_value())
    key = RedisKeys(settings.redis_prefix).device(device)
    deadline = time.monotonic() + timeout_s
    ts = int(time.time() * 1000) - 3_600_000
    first = iso_ms(ts + 1000)

    def scored() -> bool:
        last = client.hget(key, "last_reading_ts")
        return last is not None and last.decode() >= first

    while not scored():
        assert worker.alive(), f"worker exited:\n{worker.tail()}"
        assert time.monotonic() < deadline, f"worker not scoring:\n{worker.tail()}"
        ts += 1000
        publisher.send(device, reading_json(device, ts, NORMAL))
        publisher.flush()
        time.sleep(0.5)
    del publisher  # a producer left alive would log reconnect attempts after the broker stops


@contextmanager
def scoring_worker(settings: Settings, log: Path, probe: str = "probe-0", timeout_s: float = 120) -> Iterator[WorkerProcess]:
    """A worker on ``settings`` (info logs) that has scored a probe reading; its log's tail is printed at the end."""
    with WorkerProcess(settings.model_copy(update={"log_level": "info"}), log) as worker:
        try:
            probe_until_scored(settings, worker, probe, timeout_s)
            yield worker
        finally:
            print(worker.tail())


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a ``floorwatch`` subprocess on ``settings`` (no metrics endpoint, info logs)."""
    return {**os.environ, **settings.model_copy(update={"metrics_port": 0, "log_level": "info"}).as_env(), **extra}


def wait_log(worker: WorkerProcess, needle: str, timeout_s: float = 90) -> None:
    """Until ``needle`` is in the worker's log."""
    deadline = time.monotonic() + timeout_s
    while needle not in worker.log_text():
        assert worker.alive(), f"worker exited:\n{worker.tail()}"
        assert time.monotonic() < deadline, f"{needle!r} not in the worker's log:\n{worker.tail()}"
        time.sleep(0.2)


def wait_scored(settings: Settings, last_ts: dict[str, int], timeout_s: float = 90) -> None:
    """Until every device's hash shows its last reading (the worker has consumed everything)."""
    client = redis.Redis.from_url(settings.redis_url_value())
    keys = RedisKeys(settings.redis_prefix)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = [client.hget(keys.device(d), "last_reading_ts") for d in last_ts]
        if all(v is not None and v.decode() >= iso_ms(last_ts[d]) for d, v in zip(last_ts, seen)):
            time.sleep(1.0)  # the batch's alerts are sent before its statuses; allow the topic to settle
            return
        time.sleep(0.25)
    raise AssertionError(f"not all readings were scored in {timeout_s}s")


def redis_alerts(settings: Settings, device_prefix: str) -> list[Alert]:
    client = redis.Redis.from_url(settings.redis_url_value())
    entries = client.xrange(RedisKeys(settings.redis_prefix).alerts)
    alerts = [Alert.model_validate_json(fields[b"alert"]) for _, fields in entries]
    return [a for a in alerts if a.device_id.startswith(device_prefix)]


def topic_messages(settings: Settings, topic: str, idle_s: float = 2.0) -> list[bytes]:
    return read_topic(settings, topic, idle_s=idle_s, name="test-read")


def topic_alerts(settings: Settings, device_prefix: str) -> list[Alert]:
    alerts = [Alert.model_validate(orjson.loads(v)) for v in topic_messages(settings, settings.alerts_topic)]
    return [a for a in alerts if a.device_id.startswith(device_prefix)]


def require_kafka() -> None:
    """Skip a test that needs the local Apache Kafka when Java or its jars are missing; under CI, fail."""
    from stream_app.lab.kafka_local import kafka_available

    reason = kafka_available(kafka_home())
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs Apache Kafka: {reason}", pytrace=False)
    pytest.skip(f"Apache Kafka not available: {reason}")


def kafka_home() -> Path | None:
    home = os.environ.get("FLOORWATCH_KAFKA_HOME")
    return Path(home) if home else None


def chromium_path() -> str | None:
    """A Chromium for Playwright: Debian's, else Playwright's own download, else None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            path = p.chromium.executable_path
        return path if Path(path).exists() else None
    except Exception:
        return None
