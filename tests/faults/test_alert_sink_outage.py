"""The alerts topic unwritable for a moment: the batch whose alerts it refused gets them sent again
once it takes them, and no reading of it is scored twice (before, the alert was lost and the batch's
readings dead-lettered as "out of order"). Both delivery paths on Apache Kafka: at-least-once (the
alert sink retried), and exactly-once (the batch's transaction retried with the same records; before,
after 3 tries the batch was read again and its readings refused as already seen)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from producers.fleet import run_simulation
from producers.scenarios import Failure, FailureKind, Scenario
from stream_app.config.kafka_config import confluent_config
from stream_app.config.settings import Settings
from stream_app.contracts import DeadLetter
from tests.support.services import redis_alerts, topic_alerts, topic_messages, wait_log, wait_scored

from .drills import Drill

pytestmark = pytest.mark.integration


def _alerts_record_limit(settings: Settings, limit: int | None) -> None:
    """Set the alerts topic's ``max.message.bytes`` (None: back to the broker's default)."""
    op = AlterConfigOpType.SET if limit is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry("max.message.bytes", str(limit or ""), incremental_operation=op)
    resource = ConfigResource(ResourceType.TOPIC, settings.alerts_topic, incremental_configs=[entry])
    admin = AdminClient(confluent_config(settings.kafka))
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


@pytest.mark.parametrize("broker", ["kafka"])
def test_alerts_refused_for_a_moment_are_sent_once_the_topic_takes_them(
    drill_factory: Callable[..., Drill], broker: str
) -> None:
    # At-least-once (no transactions): the path where the batch's own sinks flush and may fail.
    drill = drill_factory("alerts-refused", broker=broker, kafka_transactions=False)
    settings = drill.settings
    worker = drill.start_worker()
    drill.wait_consuming([worker])

    _alerts_record_limit(settings, 64)  # every alert (~600 bytes) refused: MESSAGE_TOO_LARGE
    failure = Failure(device=2, kind=FailureKind.power_surge, start_s=200, duration_s=150, magnitude=0.009)
    scenario = Scenario(devices=6, device_prefix="refused", duration_s=600, seed=11, failures=[failure])
    stats, sim = run_simulation(settings, scenario, start_ms=int(time.time() * 1000) - 700_000, speed=0, batch=1)
    wait_log(worker, "KafkaAlertSink failed", timeout_s=120)
    time.sleep(3)  # a few attempts more, the worker reading nothing past the batch meanwhile
    _alerts_record_limit(settings, None)
    wait_scored(settings, stats.last_ts_ms or {}, timeout_s=180)

    failed = sim.device_ids[2]
    on_topic = {a.alert_id: a for a in topic_alerts(settings, "refused-")}.values()
    for alerts in (redis_alerts(settings, "refused-"), list(on_topic)):
        opened = {(a.device_id, a.episode.episode_id) for a in alerts if a.episode.state == "open"}
        assert {device for device, _ in opened} == {failed} and len(opened) == 1, opened
    letters = [DeadLetter.model_validate_json(v) for v in topic_messages(settings, settings.dlq_topic)]
    assert [letter.reason for letter in letters if (letter.key or "").startswith("refused-")] == []
    assert worker.counter("sink_retries") >= 1
    assert "sent after" in worker.log_text()


WINDOW = 8  # the session's tiny model: each device's first T - 1 readings complete no window


@pytest.mark.parametrize("limit", [200, pytest.param(64, marks=pytest.mark.slow)])
def test_alerts_refused_for_longer_than_a_transaction_s_tries_arrive_exactly_once(
    drill_factory: Callable[..., Drill], record: Callable[..., dict[str, object]], limit: int
) -> None:
    drill = drill_factory("alerts-refused-tx", broker="kafka")  # transactions on (the kafka profile's default)
    settings = drill.settings
    assert settings.kafka_transactions
    worker = drill.start_worker()
    drill.wait_consuming([worker])
    before = {name: worker.counter(name) for name in ("readings", "windows_scored", "duplicate_readings")}

    # Every alert (~600 bytes) refused: the transaction aborts, and is tried again with the same records.
    # 200 bytes: the coordinator's abort markers (~80 bytes) fit, each attempt fails at once. 64 bytes
    # (slow): they do not, the coordinator never finishes the abort and the transactional id is wedged;
    # the attempt waits out librdkafka's timeouts (90 s) and a new producer (a new id) sends the records.
    _alerts_record_limit(settings, limit)
    refused_at = time.monotonic()
    failure = Failure(device=2, kind=FailureKind.power_surge, start_s=200, duration_s=150, magnitude=0.009)
    scenario = Scenario(devices=6, device_prefix="refusedtx", duration_s=600, seed=11, failures=[failure])
    stats, sim = run_simulation(settings, scenario, start_ms=int(time.time() * 1000) - 700_000, speed=0, batch=1)
    wait_log(worker, "transaction failed", timeout_s=120)
    held = worker.counter("messages")
    time.sleep(4)  # more attempts than the old 3 tries (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of backoff)
    assert limit == 64 or worker.counter("sink_retries") > 3
    assert worker.counter("messages") == held  # nothing read past the batch meanwhile
    _alerts_record_limit(settings, None)
    refused_s = time.monotonic() - refused_at
    wait_scored(settings, stats.last_ts_ms or {}, timeout_s=180)

    failed = sim.device_ids[2]
    on_topic = topic_alerts(settings, "refusedtx-")  # read_committed, duplicates kept
    assert len({a.alert_id for a in on_topic}) == len(on_topic), "an alert record twice on the topic"
    for alerts in (redis_alerts(settings, "refusedtx-"), on_topic):
        opened = {(a.device_id, a.episode.episode_id) for a in alerts if a.episode.state == "open"}
        assert {device for device, _ in opened} == {failed} and len(opened) == 1, opened
    letters = [DeadLetter.model_validate_json(v) for v in topic_messages(settings, settings.dlq_topic)]
    assert [letter.reason for letter in letters if (letter.key or "").startswith("refusedtx-")] == []
    # No reading lost, re-read or left unscored: each device's readings after its first T - 1 made a window.
    after = {name: worker.counter(name) - before[name] for name in before}
    record(
        f"alerts refused (max.message.bytes {limit}), transactions on", refused_s=round(refused_s, 1), failed_attempts=worker.counter("sink_retries"),
        readings=stats.readings, scored=after["windows_scored"], re_read=after["duplicate_readings"],
        topic_alerts=len(on_topic), topic_alert_ids=len({a.alert_id for a in on_topic}),
    )  # fmt: skip
    assert after["readings"] == stats.readings and after["duplicate_readings"] == 0
    assert after["windows_scored"] == stats.readings - scenario.devices * (WINDOW - 1)
    assert "sent after" in worker.log_text() and "transaction fenced" not in worker.log_text()
