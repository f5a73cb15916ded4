"""The batch handler, driven with in-memory sinks and a real small model: what each batch sends
where, without Kafka or Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from confluent_kafka import Message

from producers.simulator import normal_training_series
from stream_app.config.settings import Settings
from stream_app.models.store import ModelBundle, ModelStore
from stream_app.pipeline.detector import Detector
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.pipeline.scorer import Scorer
from stream_app.worker.handler import BatchHandler
from stream_app.worker.metrics import Metrics
from stream_app.worker.sinks.memory import MemoryAlertSink, MemoryDeadLetterSink
from stream_app.worker.sinks.redis import RedisSink
from stream_app.worker.start import detector_config

TOPIC = "sensor-readings"


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> tuple[ModelBundle, Scorer]:
    bundle = ModelStore(tiny_model_dir).load()
    scorer = Scorer.from_bundle(bundle, max_batch=64)
    return bundle, scorer


@pytest.fixture
def detector(model: tuple[ModelBundle, Scorer]) -> GroupDetector:
    """A fresh detector (no device state) on the shared model: fixed lines, no refits."""
    bundle, scorer = model
    settings = Settings(adapt_lines=False, refit=False)
    return GroupDetector.single(Detector(bundle, scorer, detector_config(settings.detection, settings.episodes)))


@pytest.fixture
def sinks() -> tuple[MemoryAlertSink, MemoryDeadLetterSink]:
    return MemoryAlertSink(), MemoryDeadLetterSink()


def handler_of(detector: GroupDetector, alerts: list, dead: MemoryDeadLetterSink, **kwargs: object) -> BatchHandler:
    return BatchHandler(detector, alerts, dead, Metrics(), **kwargs)  # type: ignore[arg-type]


def normal(features: list[str], n: int) -> list[dict[str, float]]:
    """``n`` readings' values like those the model was trained on (the simulator's normal)."""
    (series,) = normal_training_series(1, n, seed=7)
    return [dict(zip(features, map(float, row))) for row in series]


def messages(features: list[str], device: str, n: int, *, anomalous_from: int | None = None, offset: int = 0) -> list[Message]:
    """One reading a second per message; from ``anomalous_from`` on, every sensor 20 times its normal."""
    t0 = int(time.time() * 1000) - n * 1000
    out = []
    for i, row in enumerate(normal(features, n)):
        scale = 20.0 if anomalous_from is not None and i >= anomalous_from else 1.0
        body = {"device_id": device, "ts": t0 + i * 1000, "values": {f: v * scale for f, v in row.items()}}
        out.append(Message(topic=TOPIC, partition=3, offset=offset + i, key=device.encode(), value=orjson.dumps(body)))
    return out


def features_of(detector: GroupDetector) -> list[str]:
    return list(detector.detector_for("any").bundle.card.features)


async def test_bad_bytes_go_to_the_dead_letter_sink_with_their_reason_and_the_rest_is_scored(
    detector: GroupDetector, sinks: tuple[MemoryAlertSink, MemoryDeadLetterSink]
) -> None:
    alerts, dead = sinks
    handler = handler_of(detector, [alerts], dead)
    good = messages(features_of(detector), "pump-1", 12)
    bad = Message(topic=TOPIC, partition=3, offset=99, key=b"pump-1", value=b"\xff{not json")

    await handler.handle([*good[:6], bad, *good[6:]])

    (letter,) = dead.letters
    assert letter.reason.startswith("not valid JSON")
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (TOPIC, 3, 99)
    assert letter.original_b64 is not None and letter.original_size == len(b"\xff{not json")
    assert alerts.alerts == []
    assert alerts.statuses["pump-1"][0].state == "normal"
    totals = handler.metrics.totals()
    assert totals["floorwatch_messages_total"] == 13 and totals["floorwatch_readings_total"] == 12
    assert totals["floorwatch_dead_letters_total"] == 1


async def test_a_reading_the_detector_refuses_is_dead_lettered_as_its_own_part_of_its_message(
    detector: GroupDetector, sinks: tuple[MemoryAlertSink, MemoryDeadLetterSink]
) -> None:
    alerts, dead = sinks
    handler = handler_of(detector, [alerts], dead)
    features = features_of(detector)
    now = int(time.time() * 1000)
    row = normal(features, 1)[0]
    items = [{"ts": now - 2000, "values": row}, {"ts": now - 1000, "values": {features[0]: row[features[0]]}}]
    batched = Message(topic=TOPIC, partition=1, offset=7, key=b"pump-2",
                      value=orjson.dumps({"device_id": "pump-2", "readings": items}))  # fmt: skip
    single = messages(features, "pump-3", 1, offset=8)

    await handler.handle([batched, *single])

    (letter,) = dead.letters
    assert letter.reason.startswith("readings[1]: missing sensor(s)")
    assert (letter.source_partition, letter.source_offset) == (1, 7)
    assert orjson.loads(letter.original or "") == {"device_id": "pump-2", "reading": items[1]}


async def test_an_anomaly_makes_one_alert_in_every_alert_sink(detector: GroupDetector) -> None:
    first, second, dead = MemoryAlertSink(), MemoryAlertSink(), MemoryDeadLetterSink()
    handler = handler_of(detector, [first, second], dead)
    batch = messages(features_of(detector), "pump-4", 40, anomalous_from=15)

    await handler.handle(batch)

    (alert,) = first.alerts
    assert (alert.device_id, alert.episode.state) == ("pump-4", "open")
    assert second.alerts == [alert]
    assert first.statuses["pump-4"][0].state == "anomalous"
    assert dead.letters == []
    assert handler.metrics.totals()["floorwatch_alerts_total"] == 1


async def test_a_message_the_worker_failed_on_reaches_the_dead_letter_sink_alone_with_its_bytes(
    detector: GroupDetector,
) -> None:
    # The consumer (consume.py) handles a failed batch message by message; a message that fails
    # alone is dead-lettered with its bytes, to be replayed: its offset is never committed unsent.
    alerts, dead = MemoryAlertSink(), MemoryDeadLetterSink()
    handler = handler_of(detector, [alerts], dead)
    batch = messages(features_of(detector), "pump-5", 40, anomalous_from=15)

    await handler.dead_letter_failed(batch[:1], RuntimeError("a bug"))
    (letter,) = dead.letters
    assert letter.reason == "the worker failed on this message: RuntimeError: a bug"
    assert (letter.source_offset, letter.original) == (0, batch[0].value().decode())  # type: ignore[union-attr]
    assert alerts.alerts == []


@pytest.fixture
async def hung_redis() -> AsyncIterator[str]:
    """A server that accepts connections and never answers: a hung Redis."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    server.close()
    for writer in held:
        writer.close()


async def test_a_hung_redis_neither_stalls_nor_fails_the_batch(detector: GroupDetector, hung_redis: str) -> None:
    # Reading open episodes is bounded by the budget and opens the breaker; alerts wait in the
    # Redis sink's buffer (written once it answers) while the batch completes.
    from stream_app.worker.adaptation import AdaptationStore

    redis_sink = RedisSink(aioredis.from_url(hung_redis), "fw")
    memory, dead = MemoryAlertSink(), MemoryDeadLetterSink()
    adaptation = AdaptationStore(redis_sink.client, "fw", ttl_s=60)  # saved lines are read on the same bounded path
    handler = handler_of(detector, [memory, redis_sink], dead, episodes=redis_sink, adaptation=adaptation, resume_budget_s=0.2)

    # The guard only keeps a broken handler from hanging the test run.
    await asyncio.wait_for(handler.handle(messages(features_of(detector), "pump-7", 40, anomalous_from=15)), 60)

    assert [a.device_id for a in memory.alerts] == ["pump-7"]
    assert redis_sink.pending == 1 and not redis_sink.available
    await redis_sink.client.aclose()


def test_in_memory_sinks_are_sinks() -> None:
    from stream_app.worker.sinks import AlertSink, DeadLetterSink

    assert isinstance(MemoryAlertSink(), AlertSink) and isinstance(MemoryDeadLetterSink(), DeadLetterSink)


def run_through_the_consumer(handler: BatchHandler, batch: list[Message]) -> list[list[tuple[int, int]]]:
    """The batch read once by the real readings consumer (librdkafka stubbed, as in test_consume):
    the offsets it commits."""
    from stream_app.worker.consume import ReadingsConsumer
    from tests.unit.test_consume import BrokerStub

    stub = BrokerStub(batch)  # type: ignore[arg-type]
    settings = Settings()
    consumer = ReadingsConsumer(settings.kafka, settings.batch, handler.handle, on_failure=handler.dead_letter_failed)
    consumer._consumer = stub  # type: ignore[assignment]
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(consumer.run())
    return stub.commits


def test_an_alert_sink_away_for_a_moment_gets_the_batch_s_alert_once_it_is_back(detector: GroupDetector) -> None:
    # The detector has taken the batch in before the sink fails: the same alert is sent again (its
    # id is deterministic), not the readings scored again, which the detector would now refuse as
    # older than the device's last reading (the alert lost, 39 of 40 readings dead-lettered).
    kafka = MemoryAlertSink(fail=ConnectionError("broker away"), failures=2)
    redis, dead = MemoryAlertSink(), MemoryDeadLetterSink()
    handler = handler_of(detector, [kafka, redis], dead, retry_first_s=0.01)
    batch = messages(features_of(detector), "pump-8", 40, anomalous_from=15)

    commits = run_through_the_consumer(handler, batch)

    (alert,) = kafka.alerts
    assert (alert.device_id, alert.episode.state) == ("pump-8", "open") and kafka.flushes == 3
    assert redis.alerts == [alert] and redis.flushes == 1  # at the first attempt, and not sent it again
    assert dead.letters == []
    assert commits == [[(3, 40)]]
    totals = handler.metrics.totals()
    assert totals["floorwatch_alerts_total"] == 1 and totals["floorwatch_dead_letters_total"] == 0
    assert totals["floorwatch_sink_retries_total"] == 2


async def test_dead_letters_that_could_not_be_sent_are_sent_again_not_their_readings_scored_again(
    detector: GroupDetector,
) -> None:
    alerts, dead = MemoryAlertSink(), MemoryDeadLetterSink(fail=ConnectionError("broker away"))
    handler = handler_of(detector, [alerts], dead, retry_first_s=0.01)
    batch = messages(features_of(detector), "pump-9", 20)
    bad = Message(topic=TOPIC, partition=3, offset=99, key=b"pump-9", value=b"\xff{not json")

    task = asyncio.create_task(handler.handle([*batch, bad]))
    await asyncio.sleep(0.2)
    # The alert sink took its share at once (the sinks are flushed together) and is not sent it again.
    assert not task.done() and dead.letters == [] and alerts.statuses["pump-9"][0].state == "normal"
    assert alerts.flushes == 1
    dead.fail = None
    await asyncio.wait_for(task, 10)

    (letter,) = dead.letters
    assert letter.reason.startswith("not valid JSON") and letter.source_offset == 99
    assert alerts.statuses["pump-9"][0].state == "normal"
    assert handler.metrics.totals()["floorwatch_dead_letters_total"] == 1


async def test_a_batch_whose_sink_never_comes_back_is_given_up_on_shutdown_and_never_returns(
    detector: GroupDetector,
) -> None:
    # Cancelled mid-retry (the worker stopping): handle ends without returning, so the consumer
    # commits nothing of the batch; its next owner reads it again from the last commit. Redis took
    # the alert at the first attempt (the sinks are flushed together): the re-read sends it the same id.
    kafka, redis, dead = MemoryAlertSink(fail=ConnectionError("broker away")), MemoryAlertSink(), MemoryDeadLetterSink()
    handler = handler_of(detector, [kafka, redis], dead, retry_first_s=0.01, retry_max_s=0.02)
    task = asyncio.create_task(handler.handle(messages(features_of(detector), "pump-10", 40, anomalous_from=15)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert kafka.alerts == [] and kafka.flushes > 3
    assert [a.device_id for a in redis.alerts] == ["pump-10"] and redis.flushes == 1
    assert handler.metrics.totals().get("floorwatch_alerts_total", 0) == 0
    assert handler.metrics.registry.get_sample_value("floorwatch_sink_retrying") == 0

    # What was abandoned leaves nothing behind: the next batch is sent alone.
    kafka.fail = None
    await handler.handle(messages(features_of(detector), "pump-6", 40, anomalous_from=15, offset=100))
    assert [a.device_id for a in kafka.alerts] == ["pump-6"]
    assert [a.device_id for a in redis.alerts] == ["pump-10", "pump-6"]


async def test_a_detection_bug_still_fails_the_batch_for_the_consumer_to_handle_message_by_message(
    detector: GroupDetector, sinks: tuple[MemoryAlertSink, MemoryDeadLetterSink]
) -> None:
    alerts, dead = sinks
    handler = handler_of(detector, [alerts], dead, retry_first_s=0.01)

    def broken(readings: object) -> object:
        raise RuntimeError("a bug")

    handler.detector.process = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await handler.handle(messages(features_of(detector), "pump-11", 5))
    assert handler.metrics.totals()["floorwatch_sink_retries_total"] == 0 and alerts.flushes == 0

