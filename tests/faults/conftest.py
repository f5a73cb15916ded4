"""Fault drills against the real embedded broker and Redis, with worker subprocesses we can kill.

Each test gets its own topics, consumer group and Redis prefix (a ``Drill``), so drills never see
each other's readings or alerts. Figures are printed and, if ``FLOORWATCH_FAULTS_RESULTS`` names a
file, appended to it as one JSON line per scenario.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from stream_app.lab.embedded import EmbeddedServices
from stream_app.lab.harness import fresh_embedded, pointed_at
from stream_app.lab.kafka_local import KafkaCluster
from stream_app.config.settings import Settings
from stream_app.worker.topics import ensure_topics

from .drills import Drill

@pytest.fixture(scope="session")
def fault_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServices]:
    with fresh_embedded(tmp_path_factory.mktemp("fault-services")) as embedded:
        yield embedded


@pytest.fixture
def drill_factory(
    request: pytest.FixtureRequest, fault_services: EmbeddedServices, tiny_model_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., Drill]]:
    drills: list[Drill] = []

    def make(
        name: str, services: EmbeddedServices | None = None, broker: str = "embedded",
        cluster: KafkaCluster | None = None, **overrides: object,
    ) -> Drill:
        """A drill on the embedded broker, or on Apache Kafka (``broker="kafka"``: the session's one-node
        cluster, or ``cluster``); Redis is the embedded services' either way."""
        state = (services or fault_services).state()
        assert state is not None
        kafka = None
        if broker == "kafka":
            cluster = cluster if cluster is not None else request.getfixturevalue("kafka_cluster")
            kafka = cluster.state().bootstrap_servers
        unique = f"{name}-{time.time_ns() % 10**9}"
        settings = pointed_at(
            Settings(),
            state,
            kafka=kafka,
            model_dir=tiny_model_dir,
            app_id=f"fw-{unique}",
            readings_topic=f"{unique}-readings",
            alerts_topic=f"{unique}-alerts",
            dlq_topic=f"{unique}-dlq",
            labels_topic=f"{unique}-labels",
            redis_prefix=f"fw-{unique}",
            metrics_port=0,
            readings_partitions=4,
            batch_max_wait_s=0.02,
            **overrides,
        )
        ensure_topics(settings)
        drill = Drill(name, settings, tmp_path / name)
        drill.workdir.mkdir(parents=True, exist_ok=True)
        drills.append(drill)
        return drill

    yield make
    for drill in drills:
        drill.stop_all()
        for i, w in enumerate(drill.workers):
            print(f"--- {drill.name} worker {i} log tail ---\n{w.tail(1500)}")


@pytest.fixture
def record() -> Callable[..., dict[str, object]]:
    """Print one scenario's figures and append them to $FLOORWATCH_FAULTS_RESULTS as a JSON line."""

    def write(scenario: str, **figures: object) -> dict[str, object]:
        row = {"scenario": scenario, **figures}
        line = orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        print(f"FAULT RESULT {line}")
        target = os.environ.get("FLOORWATCH_FAULTS_RESULTS")
        if target:
            with open(target, "a") as out:
                out.write(line + "\n")
        return row

    return write
