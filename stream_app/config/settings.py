"""All configuration in one place, read from environment variables, in sections.

Kafka and Redis addresses use the conventional unprefixed names (``KAFKA_BOOTSTRAP_SERVERS``,
``REDIS_URL``); everything else is ``FLOORWATCH_<FIELD>``. Defaults point at the embedded
services that ``floorwatch up`` starts on loopback.

Each section (kafka, redis, batch, detection, episodes, lifecycle, ops) is a model of its own that
declares its fields; ``Settings`` is all of them, read from the environment, and ``settings.redis``
(etc.) is one section alone, for a part that needs no more. The variables keep their flat names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_app.config.secret_urls import mask_url, normalize_url, secrets_of
from stream_app.pipeline.routing import AssetGroup, parse_asset_groups
from stream_app.pipeline.rules import Rule, parse_rules

_Section = TypeVar("_Section", bound=BaseModel)


class KafkaSettings(BaseModel):
    """The broker, its credentials, the topics and the consumer group."""

    model_config = ConfigDict(populate_by_name=True)

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
    health_topic: str = "model-health"
    feedback_topic: str = "alert-feedback"
    readings_partitions: int = Field(8, ge=1)
    alerts_partitions: int = Field(4, ge=1)
    app_id: str = "floorwatch"


class RedisSettings(BaseModel):
    """Where alerts, device statuses and the lifecycle's records are kept, and how long."""

    model_config = ConfigDict(populate_by_name=True)

    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices("REDIS_URL", "FLOORWATCH_REDIS_URL"),
    )
    redis_prefix: str = "floorwatch"
    redis_stream_maxlen: int = Field(10_000, ge=10)
    # How long an alert id is remembered for de-duplication.
    redis_alert_id_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    # The most a batch waits on Redis (reading open episodes of devices new to the worker; writes
    # are off the batch's path), and the bound on each probe while Redis is out.
    redis_budget_s: float = Field(1.0, gt=0)
    # While Redis is out (or hung), one probe per this many seconds.
    redis_probe_interval_s: float = Field(1.0, gt=0)
    # Device hashes and per-device alert streams expire this long after their last write.
    redis_device_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    # Score history per device for the console (history.py): one point (the bucket's highest
    # distance to normal) per step of reading time, the newest ``points`` kept; 0 points: none kept.
    history_step_s: float = Field(60.0, gt=0)
    history_points: int = Field(180, ge=0)
    # A device silent (worker's clock) for longer than max(factor x its observed interval, min_s) is
    # marked offline in its hash; its open episode is suspended, not closed. factor 0: never.
    offline_factor: float = Field(10.0, ge=0)
    offline_min_s: float = Field(30.0, ge=0)

    @field_validator("redis_url")
    @classmethod
    def _redis_url_reads(cls, value: SecretStr) -> SecretStr:
        normalize_url(value.get_secret_value())  # UrlError's message never quotes the URL
        return value

    def redis_url_value(self) -> str:
        """The Redis URL for a client, its credentials percent-encoded (a raw ``#``, ``/``, ``?``, ``@``
        or ``%`` in the password would otherwise be read as part of the host, port or path)."""
        return normalize_url(self.redis_url.get_secret_value())


class BatchSettings(BaseModel):
    """The worker's micro-batches."""

    batch_max_size: int = Field(1024, ge=1)
    batch_max_wait_s: float = Field(0.05, gt=0)


class DetectionSettings(BaseModel):
    """The models, the detector's windows and checks, and how it adapts to each device."""

    model_dir: Path = Path(".floorwatch/models")
    # A model per asset group, chosen by device id: "pumps=pump-*,valve-*; presses=press-*" (see routing.py).
    asset_groups: str = ""
    # Score every k-th reading of a device; 1 scores every reading.
    stride: int = Field(1, ge=1)
    # A device with no reading for this long (worker's clock) has its state dropped; 0 keeps all.
    device_idle_s: float = Field(6 * 3600.0, ge=0)
    # A gap longer than this between two readings of a device restarts its window.
    max_gap_s: float = Field(60.0, gt=0)
    # Readings stamped further than this into the future are rejected.
    max_future_s: float = Field(300.0, ge=0)
    # A model calibrated on fewer windows than this has its level envelope widened this many times around its
    # centre (fewer describe an afternoon, not the process; with a warning); 0 turns the check off below it.
    level_check_min_windows: int = Field(1000, ge=0)
    level_check_short_widening: float = Field(2.0, ge=0)
    # Operator bounds checked beside the model, e.g. "temperature<0.09, vibration<=0.1" (see rules.py).
    rules: str = ""
    # Lines that follow each device: a device's first windows (and those after a relearn) fill its
    # line's history; it opens no episode meanwhile.
    adapt_lines: bool = True
    adapt_warmup_windows: int = Field(64, ge=0)
    # Hours of the day / week whose verdicts ran high in each of the last two days / weeks widen that
    # hour's lines (pipeline/seasonal.py).
    adapt_seasonal: bool = True
    # A crossing of the line no higher and no longer than this many of the device's recent brief excursions
    # (a busy stream's own spikes, bursts, slow requests) opens no episode (pipeline/transients.py). 0: off.
    adapt_transients_seen: int = Field(2, ge=0)
    # A sensor's window median far outside the range of its recent ones (a step the model reconstructs: a level
    # moved under its spikes, a rate fallen to near zero) counts in the level check (pipeline/shifts.py).
    adapt_shifts: bool = True
    # ... and for models of several sensors, a sensor's median far from what the others' medians predict (a
    # temperature that rises while current and speed stay where the load puts them).
    adapt_shift_relative: bool = True
    # A lone sensor's step between two readings over 1.5 times the largest it made in training (a spike, a
    # jump of a level that wanders) puts its window over the line (thresholds.jump_lines).
    check_jumps: bool = True
    # A lone sensor's hour far from the same hour of the last days and of the same day of past weeks (a quiet
    # weekday, a start that did not come) puts its windows over the line (pipeline/profiles.py).
    check_hours: bool = True
    # Each device's lines and seasonal hours are saved to Redis this often and taken up by the next worker
    # to meet the device (a restart, a rebalance), so it does not warm up again (worker/adaptation.py). 0: never.
    adapt_save_s: float = Field(300.0, ge=0)
    # Models refitted on the stream.
    refit: bool = True
    refit_min_interval_s: float = Field(3600.0, ge=0)
    refit_every_windows: int = Field(2048, ge=1)
    # A group with no model learns its first one from its stream (cold_start.py) instead of stopping the worker.
    cold_start: bool = False
    cold_start_readings: int = Field(5000, ge=100, description="readings a group collects before its first model is trained")
    cold_start_min_span_s: float = Field(3600.0, ge=0, description="stream time those readings must span")

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


class EpisodeSettings(BaseModel):
    """One failure, one alert episode."""

    episode_open_after: int = Field(3, ge=1, description="consecutive anomalous windows to open")
    # 30: intermittent faults (spikes, a ramp hovering at the line) stay one episode; see README.
    episode_close_after: int = Field(30, ge=1, description="consecutive quiet windows to close")
    episode_close_ratio: float = Field(0.8, gt=0, le=1, description="quiet means score < ratio*threshold")
    # Quiet this long also closes an episode (slow streams: 30 windows can be days); 0: windows only.
    episode_close_after_s: float = Field(900.0, ge=0)
    # An episode open longer closes and the device relearns its line: it is the new normal. 0: no limit.
    episode_max_duration_s: float = Field(6 * 3600.0, ge=0)
    # A run this many times an open episode's settled peak (or a failed check in an episode the model
    # opened) supersedes it with a new episode: a new, larger fault (episodes.EpisodeRule). 0: never.
    episode_escalate_factor: float = Field(2.0, ge=0)
    # A run barely over the line opens only once its windows add up to open_after windows this far over (or
    # after 4 x open_after windows over it): most false openings were marginal (episodes.EpisodeRule). 1: off.
    episode_marginal_ratio: float = Field(1.2, ge=1.0)


class LifecycleSettings(BaseModel):
    """The model lifecycle (reload.py, drift.py, shadow.py, feedback.py, policy.py)."""

    # How often a worker checks the model store for a promoted version; 0 turns hot reload off.
    reload_interval_s: float = Field(1.0, ge=0)
    # Drift watch (drift.py): limits of each figure, and how much of the traffic it samples.
    drift_watch: bool = True
    drift_psi_limit: float = Field(0.25, gt=0)
    drift_ks_limit: float = Field(0.2, gt=0)
    drift_score_psi_limit: float = Field(0.25, gt=0)
    drift_over_line_ratio_limit: float = Field(20.0, gt=0, description="share of windows over the line / calibrated share")
    drift_alerts_per_device_day_limit: float = Field(2.0, gt=0)
    drift_window_s: float = Field(300.0, ge=60)
    drift_rate_window_s: float = Field(86_400.0, ge=60)
    drift_sample_every: int = Field(10, ge=1, description="one reading in N is binned")
    drift_min_samples: int = Field(200, ge=1)
    # The automatic policy (policy.py, `models autopilot`): off unless enabled.
    policy_enabled: bool = False
    policy_shadow_s: float = Field(3600.0, gt=0)
    policy_train_since: str = "24h"
    policy_min_windows: int = Field(10_000, ge=1)
    policy_max_over_line_share: float = Field(0.01, gt=0, le=1)


class OpsSettings(BaseModel):
    """Where state is kept, metrics served and what is logged."""

    state_dir: Path = Path(".floorwatch")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 disables the Prometheus endpoint")
    log_level: str = "warning"
    # "json": the worker's log lines (its processes', Faust's) as one JSON object each (worker/logs.py).
    log_format: Literal["text", "json"] = "text"


SECTIONS: dict[str, type[BaseModel]] = {
    "kafka": KafkaSettings,
    "redis": RedisSettings,
    "batch": BatchSettings,
    "detection": DetectionSettings,
    "episodes": EpisodeSettings,
    "lifecycle": LifecycleSettings,
    "ops": OpsSettings,
}


# Bases in reverse: pydantic lists the last base's fields first (``floorwatch config``: kafka first).
class Settings(
    OpsSettings, LifecycleSettings, EpisodeSettings, DetectionSettings, BatchSettings, RedisSettings, KafkaSettings,
    BaseSettings,
):
    model_config = SettingsConfigDict(env_prefix="FLOORWATCH_", extra="ignore")

    @property
    def kafka(self) -> KafkaSettings:
        return self._section(KafkaSettings)

    @property
    def redis(self) -> RedisSettings:
        return self._section(RedisSettings)

    @property
    def batch(self) -> BatchSettings:
        return self._section(BatchSettings)

    @property
    def detection(self) -> DetectionSettings:
        return self._section(DetectionSettings)

    @property
    def episodes(self) -> EpisodeSettings:
        return self._section(EpisodeSettings)

    @property
    def lifecycle(self) -> LifecycleSettings:
        return self._section(LifecycleSettings)

    @property
    def ops(self) -> OpsSettings:
        return self._section(OpsSettings)

    def _section(self, section: type[_Section]) -> _Section:
        # Built on each call (at start-up, not per reading), so a model_copy's update is never stale.
        return section.model_construct(**{name: getattr(self, name) for name in section.model_fields})

    def secrets(self) -> list[str]:
        """Every secret these settings hold, in the forms it may take, to scrub from messages."""
        found = secrets_of(self.redis_url.get_secret_value())
        if self.kafka_sasl_password is not None and self.kafka_sasl_password.get_secret_value():
            found.append(self.kafka_sasl_password.get_secret_value())
        return found

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
        data["redis_url"] = mask_url(self.redis_url.get_secret_value())
        if self.kafka_sasl_password is not None:
            data["kafka_sasl_password"] = "**********"
        return data

    def public_sections(self) -> dict[str, dict[str, object]]:
        """``public_dump``, by section."""
        data = self.public_dump()
        return {name: {field: data[field] for field in section.model_fields} for name, section in SECTIONS.items()}
