import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained once per session on simulated normal data (seconds, not minutes)."""
    from tests.support.builders import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A one-node Apache Kafka (KRaft) from kafka/jars, once per session."""
    from stream_app.lab.kafka_local import KafkaCluster
    from tests.support.services import kafka_home, require_kafka

    require_kafka()
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka"), nodes=1, kafka_home=kafka_home())
    cluster.start()
    yield cluster
    cluster.stop()
