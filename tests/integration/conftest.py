"""Real services (the embedded broker or Apache Kafka, redis-server) and a real worker process, once per session per broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from producers.publish import ReadingPublisher, reading_json
from stream_app.lab.embedded import EmbeddedServices, free_port
from stream_app.config.settings import Settings
from stream_app.worker.sinks import RedisKeys
from stream_app.worker.topics import ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServices]:
    embedded = EmbeddedServices(tmp_path_factory.mktemp("services"), kafka_port=free_port(), redis_port=free_port())
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture(scope="session", params=["embedded", "kafka"])
def settings(request: pytest.FixtureRequest, services: EmbeddedServices, tiny_model_dir: Path) -> Settings:
    """The pipeline's settings on each broker: the embedded one, and Apache Kafka (``kafka`` profile).

    Both share the embedded Redis, under their own key prefixes.
    """
    state = services.state()
    assert state is not None
    common = dict(
        redis_url=SecretStr(state.redis_url),
        model_dir=tiny_model_dir,
        app_id="floorwatch-test",
        metrics_port=0,
        readings_partitions=4,
        batch_max_wait_s=0.02,
    )
    if request.param == "kafka":
        cluster = request.getfixturevalue("kafka_cluster")
        bootstrap = cluster.state().bootstrap_servers
        s = Settings(kafka_bootstrap_servers=bootstrap, kafka_profile="kafka", redis_prefix="fw-kafka", **common)
    else:
        s = Settings(kafka_bootstrap_servers=state.bootstrap_servers, kafka_profile="embedded", **common)
    ensure_topics(s)
    return s


def worker_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.model_copy(update={"metrics_port": 0, "log_level": "info"}).as_env()}


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker"], env=worker_env(settings), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        # Ready when a probe reading has been consumed and its device hash written.
        publisher = ReadingPublisher(settings)
        client = redis.Redis.from_url(settings.redis_url_value())
        probe = RedisKeys(settings.redis_prefix).device("probe-0")
        deadline = time.monotonic() + 120
        ts = int(time.time() * 1000) - 3_600_000
        while not client.exists(probe):
            assert process.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"worker not ready:\n{log.read_text()[-3000:]}"
            ts += 1000
            publisher.send("probe-0", reading_json("probe-0", ts, {"temperature": 0.06, "vibration": 0.075, "motor_rpm": 0.045, "motor_amps": 0.084}))
            publisher.flush()
            time.sleep(0.5)
        del publisher  # a producer left alive would log reconnect attempts after the broker stops
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        print(log.read_text()[-2000:])
