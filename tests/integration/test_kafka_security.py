"""Apache Kafka with a SASL_SSL listener (SCRAM, TLS with a certificate made here by keytool): the worker
and the producers connect with credentials; a wrong password is one line, fast; no secret in any output."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from stream_app.lab.embedded import EmbeddedServices
from stream_app.lab.kafka_local import KafkaCluster, SecureListener, make_keystore
from stream_app.config.settings import Settings
from stream_app.worker.topics import ensure_topics
from tests.support.services import cli_env, require_kafka, scoring_worker

pytestmark = pytest.mark.integration

PASSWORD = "scram-Pa55-7f3e91"
KEYSTORE_PASSWORD = "keystore-Pa55-0c4d"


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaCluster, Path]]:
    require_kafka()
    root = tmp_path_factory.mktemp("kafka-secure")
    keystore, cafile = make_keystore(root / "tls", KEYSTORE_PASSWORD)
    secure = SecureListener(
        keystore=keystore, keystore_password=SecretStr(KEYSTORE_PASSWORD), users={"floorwatch": SecretStr(PASSWORD)}
    )
    cluster = KafkaCluster(root / "cluster", nodes=1, secure=secure)
    cluster.start()
    yield cluster, cafile
    cluster.stop()


@pytest.fixture(scope="module")
def secure_settings(secure_kafka, services: EmbeddedServices, tiny_model_dir: Path) -> Settings:
    cluster, cafile = secure_kafka
    state = services.state()
    assert state is not None
    settings = Settings(
        kafka_bootstrap_servers=cluster.state().secure_bootstrap_servers,
        kafka_profile="kafka",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="floorwatch",
        kafka_sasl_password=SecretStr(PASSWORD),
        kafka_ssl_cafile=cafile,
        redis_url=SecretStr(state.redis_url),
        redis_prefix="fw-secure",
        model_dir=tiny_model_dir,
        app_id="floorwatch-secure",
        metrics_port=0,
        readings_partitions=2,
        batch_max_wait_s=0.02,
    )
    ensure_topics(settings)  # the admin client over SASL_SSL
    return settings


def test_worker_and_producer_over_sasl_ssl_and_no_secret_in_the_log(secure_settings: Settings, tmp_path: Path) -> None:
    with scoring_worker(secure_settings, tmp_path / "worker.log", "secure-0", timeout_s=150) as worker:
        pass  # a probe produced and consumed over SASL_SSL, and its alerts sent
    text = worker.log_text()
    assert PASSWORD not in text and KEYSTORE_PASSWORD not in text


def test_wrong_password_is_one_clear_line_without_the_secret(secure_settings: Settings) -> None:
    wrong = "not-the-" + PASSWORD
    env = cli_env(secure_settings, FLOORWATCH_KAFKA_SASL_PASSWORD=wrong)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stream_app", "topics"], env=env, capture_output=True, text=True, timeout=60
    )
    seconds = time.monotonic() - started
    print(f"wrong password: exit {result.returncode} after {seconds:.1f}s: {result.stderr.strip()}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "authentication" in result.stderr.lower(), result.stderr
    assert wrong not in result.stderr + result.stdout and PASSWORD not in result.stderr + result.stdout
