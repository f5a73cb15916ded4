"""Kafka SSL/SASL reach both client configs; secrets stay out of config dumps, sink logs and DLQ reasons."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import faust
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from stream_app.pipeline.decode import decode
from stream_app.lab.embedded import _redis_command, _tansu_command, free_port
from stream_app.config.kafka_config import confluent_config, consumer_config, faust_broker_settings, producer_config
from stream_app.config.settings import Settings
from stream_app.worker.sinks import RedisSink

SECRET = "hunter2-s3cret"


def _settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_in_confluent_configs(mechanism: str) -> None:
    s = _settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr(SECRET),
        kafka_ssl_cafile=Path("/etc/ssl/ca.pem"),
    )
    for config in (confluent_config(s), producer_config(s), consumer_config(s, "g")):
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == mechanism
        assert config["sasl.username"] == "svc" and config["sasl.password"] == SECRET
        assert config["ssl.ca.location"] == "/etc/ssl/ca.pem"


def test_plain_ssl_has_no_sasl_keys() -> None:
    config = confluent_config(_settings(kafka_security_protocol="SSL"))
    assert config["security.protocol"] == "SSL"
    assert not any(k.startswith("sasl.") for k in config)


def test_faust_sasl_credentials() -> None:
    s = _settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr(SECRET),
    )
    credentials = faust_broker_settings(s)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "svc" and credentials.password == SECRET
    assert str(credentials.mechanism.value if hasattr(credentials.mechanism, "value") else credentials.mechanism) == "SCRAM-SHA-512"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    plaintext = faust_broker_settings(s.model_copy(update={"kafka_security_protocol": "SASL_PLAINTEXT"}))
    assert plaintext["broker_credentials"].ssl_context is None


def test_faust_ssl_credentials() -> None:
    credentials = faust_broker_settings(_settings(kafka_security_protocol="SSL"))["broker_credentials"]
    assert isinstance(credentials, faust.SSLCredentials)
    assert "broker_credentials" not in faust_broker_settings(_settings())


def test_config_dump_masks_secrets() -> None:
    s = _settings(
        kafka_sasl_password=SecretStr(SECRET),
        redis_url=SecretStr(f"rediss://user:{SECRET}@redis.example:6380/0?password={SECRET}"),
    )
    dumped = repr(s.public_dump())
    assert SECRET not in dumped and SECRET not in repr(s) and SECRET not in str(s)
    assert "rediss://***@redis.example:6380/0" in dumped


def test_rediss_url_gives_a_tls_client() -> None:
    client = aioredis.from_url(f"rediss://:{SECRET}@redis.example:6380/0")
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert kwargs["password"] == SECRET


async def test_sink_log_names_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    # A real client to a closed port: the sink logs that Redis is unavailable, and nothing of the URL.
    client = aioredis.from_url(f"redis://:{SECRET}@127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    sink = RedisSink(client, "fw")
    with caplog.at_level(logging.DEBUG, logger="stream_app.worker.sinks"):
        assert await sink.write((), {}) is True  # nothing to write: no connection attempted
        from stream_app.pipeline.detector import DeviceStatus

        assert await sink.write((), {"v0001": [DeviceStatus("d1", 0, "normal")]}) is False
        assert await sink.write((), {"v0001": [DeviceStatus("d1", 0, "normal")]}) is False
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "unavailable" in messages[0]  # once per outage, not per batch
    assert SECRET not in caplog.text
    await client.aclose()


def test_dead_letter_reason_does_not_echo_values() -> None:
    decoded = decode(b'{"device_id": "d1", "ts": 1, "values": {"temperature": "%s"}}' % SECRET.encode())
    (rejection,) = decoded.rejections
    assert SECRET not in rejection.reason  # the reason is logged/shown; the original stays in the DLQ record only


def test_embedded_services_and_metrics_bind_loopback() -> None:
    assert _settings().metrics_host == "127.0.0.1"
    redis_cmd = _redis_command("127.0.0.1", 1, Path("/tmp"))
    assert redis_cmd[redis_cmd.index("--bind") + 1] == "127.0.0.1"
    assert "yes" == redis_cmd[redis_cmd.index("--protected-mode") + 1]
    tansu = _tansu_command("127.0.0.1", 1)
    assert tansu[tansu.index("--listener-url") + 1] == "tcp://127.0.0.1:1"
