"""Settings: read from the environment; secrets never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream_app.config.settings import Settings

SECRET = "s3cr3t-Pa55"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test without any floorwatch, Kafka or Redis variables from the outer environment."""
    for name in list(os.environ):
        if name.startswith("FLOORWATCH_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"):
            monkeypatch.delenv(name)


def test_defaults_point_at_the_embedded_services() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.redis_url_value() == "redis://127.0.0.1:6379/0"
    assert settings.stride == 1
    assert settings.model_dir == Path(".floorwatch/models")


def test_conventional_kafka_and_redis_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9093,kafka-2:9093")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6380/2")

    settings = Settings()

    assert settings.kafka_bootstrap_servers == "kafka-1:9093,kafka-2:9093"
    assert settings.redis_url_value() == "redis://cache:6380/2"


def test_prefixed_kafka_and_redis_variables_are_read_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOORWATCH_KAFKA_BOOTSTRAP_SERVERS", "kafka-9:9092")
    monkeypatch.setenv("FLOORWATCH_REDIS_URL", "redis://other:6379/1")
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "kafka-9:9092"
    assert settings.redis_url_value() == "redis://other:6379/1"


def test_floorwatch_prefixed_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOORWATCH_STRIDE", "4")
    monkeypatch.setenv("FLOORWATCH_MAX_GAP_S", "12.5")
    monkeypatch.setenv("FLOORWATCH_MODEL_DIR", "/srv/models")
    monkeypatch.setenv("FLOORWATCH_EPISODE_OPEN_AFTER", "5")
    monkeypatch.setenv("FLOORWATCH_KAFKA_PROFILE", "kafka")
    monkeypatch.setenv("FLOORWATCH_READINGS_TOPIC", "plant-a.readings")

    settings = Settings()

    assert settings.stride == 4
    assert settings.max_gap_s == 12.5
    assert settings.model_dir == Path("/srv/models")
    assert settings.episode_open_after == 5
    assert settings.kafka_profile == "kafka"
    assert settings.readings_topic == "plant-a.readings"


def test_unprefixed_names_of_other_fields_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIDE", "7")
    assert Settings().stride == 1


@pytest.mark.parametrize(
    ("name", "value"), [("FLOORWATCH_STRIDE", "0"), ("FLOORWATCH_KAFKA_PROFILE", "zookeeper")]
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        Settings()


def test_public_dump_masks_the_redis_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://user:{SECRET}@cache.internal:6379/0")

    dump = Settings().public_dump()

    assert dump["redis_url"] == "redis://***@cache.internal:6379/0"
    assert SECRET not in str(dump)


def test_public_dump_masks_a_password_only_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"rediss://:{SECRET}@cache.internal:6380/1")
    dump = Settings().public_dump()
    assert dump["redis_url"] == "rediss://***@cache.internal:6380/1"
    assert SECRET not in str(dump)


def test_public_dump_keeps_a_url_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    assert Settings().public_dump()["redis_url"] == "redis://cache.internal:6379/0"


def test_public_dump_masks_the_kafka_sasl_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOORWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FLOORWATCH_KAFKA_SASL_USERNAME", "floorwatch")
    monkeypatch.setenv("FLOORWATCH_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("REDIS_URL", f"redis://default:{SECRET}@cache:6379/0")

    settings = Settings()
    dump = settings.public_dump()

    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == SECRET  # still usable by the code
    assert dump["kafka_sasl_password"] == "**********"
    assert dump["kafka_sasl_username"] == "floorwatch"
    assert SECRET not in str(dump)
    assert SECRET not in repr(settings)


def test_public_dump_without_a_sasl_password() -> None:
    assert Settings().public_dump()["kafka_sasl_password"] is None


def test_public_dump_masks_a_password_that_contains_an_at_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://user:top@secret@cache.internal:6379/0")
    dump = Settings().public_dump()
    assert dump["redis_url"] == "redis://***@cache.internal:6379/0"
    assert "secret" not in str(dump)


def test_public_dump_masks_a_password_given_as_a_query_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://cache.internal:6379/0?password={SECRET}")
    assert SECRET not in str(Settings().public_dump())


def test_as_env_loads_the_same_settings_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    original = Settings(
        kafka_bootstrap_servers="k1:9092,k2:9092", redis_url=SecretStr("redis://:pw@r:6379/1"),
        readings_partitions=3, rules="temperature<0.09", model_dir=Path("/srv/models"),
    )  # fmt: skip
    for key, value in original.as_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == original


def test_each_section_holds_its_own_variables_under_their_flat_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_app.config.settings import SECTIONS

    monkeypatch.setenv("REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("FLOORWATCH_REDIS_BUDGET_S", "0.25")
    monkeypatch.setenv("FLOORWATCH_BATCH_MAX_SIZE", "64")
    settings = Settings()

    assert settings.redis.redis_url_value() == "redis://cache:6380/2" and settings.redis.redis_budget_s == 0.25
    assert settings.batch.batch_max_size == 64
    assert settings.model_copy(update={"batch_max_size": 8}).batch.batch_max_size == 8  # never stale
    # Every variable is in exactly one section.
    names = [name for section in SECTIONS.values() for name in section.model_fields]
    assert sorted(names) == sorted(Settings.model_fields)
    shown = settings.public_sections()
    assert list(shown) == list(SECTIONS) and shown["redis"]["redis_url"] == "redis://cache:6380/2"
