"""Kafka client settings for the two broker profiles, in one place.

``embedded`` carries the Tansu broker's workarounds (see README, "Embedded services"); ``kafka``
uses the normal settings for an Apache Kafka cluster.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from stream_app.errors import FloorwatchError
from stream_app.config.settings import KafkaSettings

# librdkafka writes its own log lines (one per failed connection attempt) straight to stderr;
# routed through logging they reach whatever the process configured, and stay out of the CLI's
# one-line errors when nothing was configured.
_librdkafka_log = logging.getLogger("stream_app.librdkafka")
_librdkafka_log.addHandler(logging.NullHandler())


class KafkaLoginError(FloorwatchError):
    """The broker refused our SASL login (wrong user or password): retrying will not help."""


def _login_error_cb(settings: KafkaSettings) -> Callable[[KafkaError], None]:
    def on_error(error: KafkaError) -> None:
        # librdkafka would retry a refused login forever, and calls fail later as a vague
        # "transport failure"; raised here, it surfaces from the next poll/flush/consume at once.
        if error.code() == KafkaError._AUTHENTICATION:
            raise KafkaLoginError(
                f"Kafka refused the login of user {settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}) at "
                f"{settings.kafka_bootstrap_servers}: check FLOORWATCH_KAFKA_SASL_USERNAME and _PASSWORD ({error.str()})"
            )
        _librdkafka_log.warning("%s", error.str())

    return on_error


def confluent_config(settings: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """librdkafka settings (producers, alert consumers, admin)."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
        # Idle connections closed by the broker are routine, not worth a log line.
        "log.connection.close": False,
        "logger": _librdkafka_log,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username or ""
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        config["error_cb"] = _login_error_cb(settings)
    if settings.kafka_ssl_cafile:
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    config.update(extra)
    return config


def producer_config(settings: KafkaSettings, **extra: Any) -> dict[str, Any]:
    return confluent_config(
        settings,
        # Same key -> same partition as Java clients and kafkajs (murmur2), so a device's
        # readings stay in order whichever client a gateway uses.
        partitioner="murmur2_random",
        **{"linger.ms": 5, "acks": "all" if settings.kafka_profile == "kafka" else 1},
        # Apache Kafka: no duplicates from a producer's own retries (the embedded broker has no idempotence).
        **({"enable.idempotence": True} if settings.kafka_profile == "kafka" else {}),
        **extra,
    )


def consumer_config(settings: KafkaSettings, group_id: str, **extra: Any) -> dict[str, Any]:
    # Tansu joins a group after about half the session timeout, and holds a fetch for about half
    # its max wait even when records arrive meanwhile (500 ms by default: 250 ms on every reading).
    embedded = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, "fetch.wait.max.ms": 20}
    # Apache Kafka: only committed transactions' records (librdkafka's default, stated: the alerts'
    # exactly-once depends on it); cooperative rebalancing, so a worker joining or leaving moves only the
    # partitions that change owner and the others keep being read.
    production = {"isolation.level": "read_committed", "partition.assignment.strategy": "cooperative-sticky"}
    timeouts = embedded if settings.kafka_profile == "embedded" else production
    return confluent_config(
        settings, **{"group.id": group_id, "enable.auto.commit": True, **timeouts, **extra}
    )


def faust_broker_settings(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` that depend on the broker profile and security."""
    config: dict[str, Any] = {"broker": f"kafka://{settings.kafka_bootstrap_servers}"}
    if settings.kafka_profile == "embedded":
        # Tansu joins a group after about half the session timeout; one record per produce
        # batch keeps its "latest offset" answers right.
        config.update(broker_session_timeout=6, broker_heartbeat_interval=1, producer_max_batch_size=1)
    if settings.kafka_security_protocol.startswith("SASL"):
        import faust

        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        config["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=_ssl_context(settings) if settings.kafka_security_protocol == "SASL_SSL" else None,
        )
    elif settings.kafka_security_protocol == "SSL":
        import faust

        config["broker_credentials"] = faust.SSLCredentials(_ssl_context(settings))
    return config


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
