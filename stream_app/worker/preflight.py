"""Checks a worker makes before it starts: what no retry will fix fails at once, in one line.

A wrong Redis password is a configuration error, not an outage to buffer through; a Kafka that does
not answer at start is one clear line rather than Faust's traceback. A Redis that is merely down is
an outage: the worker starts and buffers alerts for it.
"""

from __future__ import annotations

import logging

import redis
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from stream_app.config.kafka_config import KafkaLoginError, confluent_config
from stream_app.config.redis_client import sync_redis
from stream_app.config.secret_urls import mask_url
from stream_app.config.settings import KafkaSettings, RedisSettings, Settings
from stream_app.errors import FloorwatchError

log = logging.getLogger(__name__)


class PreflightError(FloorwatchError, ValueError):
    """A service the worker needs refused it, or cannot be reached; the message is one line, secret-free."""


def check_services(settings: Settings, *, timeout_s: float = 10.0) -> None:
    check_kafka(settings.kafka, timeout_s=timeout_s)
    check_redis(settings.redis, timeout_s=min(timeout_s, 3.0))


def check_kafka(settings: KafkaSettings, *, timeout_s: float = 10.0) -> None:
    try:
        AdminClient(confluent_config(settings)).list_topics(timeout=timeout_s)
    except KafkaLoginError as exc:  # wrong user or password: one line that says so, not "is it running?"
        raise PreflightError(str(exc)) from None
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError._AUTHENTICATION:
            raise PreflightError(
                f"Kafka at {settings.kafka_bootstrap_servers} refused the login of user "
                f"{settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}): check FLOORWATCH_KAFKA_SASL_USERNAME "
                "and _PASSWORD"
            ) from None
        raise PreflightError(
            f"Kafka at {settings.kafka_bootstrap_servers} did not answer within {timeout_s:.0f} s "
            f"({exc.args[0].name()}); is it running? (floorwatch up starts the embedded one)"
        ) from None


def check_redis(settings: RedisSettings, *, timeout_s: float = 3.0) -> None:
    client = sync_redis(settings, timeout_s=timeout_s)
    where = mask_url(settings.redis_url.get_secret_value())
    try:
        client.ping()
    except redis.AuthenticationError:
        raise PreflightError(f"Redis at {where} refused the credentials in REDIS_URL (wrong password or user)") from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise PreflightError(f"Redis at {where} needs a password: put it in REDIS_URL (redis://:PASSWORD@host)") from None
        raise PreflightError(f"Redis at {where} refused PING ({type(exc).__name__})") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        # An outage, not a mistake: alerts are buffered until Redis answers.
        log.warning("Redis at %s unreachable at start (%s); alerts are buffered until it answers", where, type(exc).__name__)
    finally:
        client.close()
