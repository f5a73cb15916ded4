"""Real services (the embedded broker or Apache Kafka, redis-server) and a real worker process, once per session per broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.config.settings import Settings
from stream_app.lab.embedded import EmbeddedServices
from stream_app.lab.harness import WorkerProcess, fresh_embedded, pointed_at
from stream_app.worker.topics import ensure_topics
from tests.support.services import scoring_worker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServices]:
    with fresh_embedded(tmp_path_factory.mktemp("services")) as embedded:
        yield embedded


@pytest.fixture(scope="session", params=["embedded", "kafka"])
def settings(request: pytest.FixtureRequest, services: EmbeddedServices, tiny_model_dir: Path) -> Settings:
    """The pipeline's settings on each broker: the embedded one, and Apache Kafka (``kafka`` profile).

    Both share the embedded Redis, under their own key prefixes.
    """
    state = services.state()
    assert state is not None
    common = Settings(model_dir=tiny_model_dir, app_id="floorwatch-test", metrics_port=0, readings_partitions=4, batch_max_wait_s=0.02)
    if request.param == "kafka":
        cluster = request.getfixturevalue("kafka_cluster")
        s = pointed_at(common, state, kafka=cluster.state().bootstrap_servers, redis_prefix="fw-kafka")
    else:
        s = pointed_at(common, state)
    ensure_topics(s)
    return s


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with scoring_worker(settings, log) as process:
        yield process
