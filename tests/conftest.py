import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained once per session on simulated normal data (seconds, not minutes)."""
    from producers.scenarios import FEATURES
    from producers.simulator import normal_training_series
    from stream_app.models.store import ModelStore
    from stream_app.training.fit import TrainingConfig, train

    root = tmp_path_factory.mktemp("models")
    series = normal_training_series(30, 1200, seed=1)
    train(series, FEATURES, ModelStore(root), TrainingConfig(window=8, units=8, epochs=4), source="tests")
    return root


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
