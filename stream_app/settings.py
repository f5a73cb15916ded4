"""All configuration in one place, read from environment variables.

Kafka and Redis addresses use the conventional unprefixed names (``KAFKA_BOOTSTRAP_SERVERS``,
``REDIS_URL``); everything else is ``FLOORWATCH_<FIELD>``. Defaults point at the embedded
services that ``floorwatch up`` starts on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .rules import Rule, parse_rules
from .routing import AssetGroup, parse_asset_groups


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOORWATCH_", extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "FLOORWATCH_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # "embedded": the Tansu broker's workarounds (short group timeouts, one record per batch).
    # "kafka": a real Apache Kafka cluster, normal settings.
    kafka_profile: Literal["embedded", "kafka"] = "embedded"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    # `floorwatch up --broker kafka`: an Apache Kafka install (its libs/) or a folder of its jars;
    # default kafka/jars, fetched by `make kafka-jars`.
    kafka_home: Path | None = None
    # kafka profile: each batch's alerts, dead letters and offsets in one transaction (exactly-once
    # alerts on the topic; see exactly_once.py). Ignored by the embedded profile (no transactions).
    kafka_transactions: bool = True

    readings_topic: str = "sensor-readings"
    dlq_topic: str = "sensor-readings-dlq"
    alerts_topic: str = "anomaly-alerts"
    labels_topic: str = "sensor-labels"
    readings_partitions: int = Field(8, ge=1)
    alerts_partitions: int = Field(4, ge=1)
    app_id: str = "floorwatch"

    # --- Redis -------------------------------------------------------------------------------
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices("REDIS_URL", "FLOORWATCH_REDIS_URL"),
    )
    redis_prefix: str = "floorwatch"
    redis_stream_maxlen: int = Field(10_000, ge=10)
    # How long an alert id is remembered for de-duplication.
    redis_alert_id_ttl_s: int = Field(7 * 24 * 3600, ge=60)

    # --- Model and scoring -------------------------------------------------------------------
    model_dir: Path = Path(".floorwatch/models")
    # A model per asset group, chosen by device id: "pumps=pump-*,valve-*; presses=press-*" (see routing.py).
    asset_groups: str = ""
    batch_max_size: int = Field(1024, ge=1)
    batch_max_wait_s: float = Field(0.05, gt=0)
    # Score every k-th reading of a device; 1 scores every reading.
    stride: int = Field(1, ge=1)
    # A gap longer than this between two readings of a device restarts its window.
    max_gap_s: float = Field(60.0, gt=0)
    # Readings stamped further than this into the future are rejected.
    max_future_s: float = Field(300.0, ge=0)
    # Operator bounds checked beside the model, e.g. "temperature<0.09, vibration<=0.1" (see rules.py).
    rules: str = ""

    # --- Episodes: one failure, one alert episode ----------------------------------------------
    episode_open_after: int = Field(3, ge=1, description="consecutive anomalous windows to open")
    # 30: intermittent faults (spikes, a ramp hovering at the line) stay one episode; see README.
    episode_close_after: int = Field(30, ge=1, description="consecutive quiet windows to close")
    episode_close_ratio: float = Field(0.8, gt=0, le=1, description="quiet means score < ratio*threshold")

    # --- Operations --------------------------------------------------------------------------
    state_dir: Path = Path(".floorwatch")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 disables the Prometheus endpoint")
    log_level: str = "warning"

    @field_validator("rules")
    @classmethod
    def _rules_parse(cls, value: str) -> str:
        parse_rules(value)  # fail at load, not when the first window is scored
        return value

    def rule_list(self) -> tuple[Rule, ...]:
        return tuple(parse_rules(self.rules))

    @field_validator("asset_groups")
    @classmethod
    def _asset_groups_parse(cls, value: str) -> str:
        parse_asset_groups(value)  # a typo fails at load, not as devices silently scored by the default model
        return value

    def asset_group_list(self) -> tuple[AssetGroup, ...]:
        return parse_asset_groups(self.asset_groups)

    def redis_url_value(self) -> str:
        return self.redis_url.get_secret_value()

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables that would load them again, secrets included:
        what a worker subprocess is started with."""
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            alias = field.validation_alias
            key = alias.choices[0] if isinstance(alias, AliasChoices) else f"{self.model_config['env_prefix']}{name.upper()}"
            env[str(key)] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return env

    def public_dump(self) -> dict[str, object]:
        """Settings for display: secrets masked, credentials stripped from URLs."""
        data = self.model_dump(mode="json")
        data["redis_url"] = _mask_url(self.redis_url_value())
        if self.kafka_sasl_password is not None:
            data["kafka_sasl_password"] = "**********"
        return data


def _mask_url(url: str) -> str:
    """Drop credentials from a URL: user:password@ and any password/username query parameter."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[1] if "@" in parts.netloc else parts.netloc
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    query = [(k, "***" if k.lower() in ("password", "username", "user") else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), parts.fragment))
