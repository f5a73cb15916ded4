"""Publishing readings and labels to Kafka with confluent-kafka, paced or as fast as possible."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import orjson
from confluent_kafka import KafkaException, Producer

from stream_app.errors import FloorwatchError
from stream_app.contracts import FailureLabel, iso_ms
from stream_app.config.kafka_config import producer_config
from stream_app.config.settings import Settings


class PublishError(FloorwatchError):
    """Kafka refused or could not take the readings."""


@dataclass(slots=True)
class PublishStats:
    messages: int = 0
    readings: int = 0
    seconds: float = 0.0
    last_ts_ms: dict[str, int] | None = None


class ReadingPublisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._errors: list[str] = []
        try:
            self._producer = Producer(producer_config(settings, **{"queue.buffering.max.messages": 1_000_000}))
        except KafkaException as exc:
            raise PublishError(f"cannot create a Kafka producer: {exc}") from exc

    def send(self, device_id: str, payload: bytes, topic: str | None = None) -> None:
        while True:
            try:
                self._producer.produce(
                    topic or self.settings.readings_topic, key=device_id.encode(), value=payload, on_delivery=self._done
                )
                return
            except BufferError:  # local queue full: let the network catch up
                self._producer.poll(0.05)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        left = self._producer.flush(timeout_s)
        if left:
            raise PublishError(f"{left} message(s) not delivered to {self.settings.kafka_bootstrap_servers}")
        if self._errors:
            raise PublishError(f"{len(self._errors)} message(s) failed: {self._errors[0]}")

    def publish_labels(self, labels: Iterable[FailureLabel]) -> None:
        for label in labels:
            self.send(label.device_id, orjson.dumps(label.model_dump(mode="json")), self.settings.labels_topic)

    def _done(self, err: object, _msg: object) -> None:
        if err is not None:
            self._errors.append(str(err))


def reading_json(device_id: str, ts_ms: int, values: dict[str, float]) -> bytes:
    return orjson.dumps({"device_id": device_id, "ts": iso_ms(ts_ms), "values": values})


def batch_json(device_id: str, readings: list[tuple[int, dict[str, float]]]) -> bytes:
    return orjson.dumps(
        {"device_id": device_id, "readings": [{"ts": iso_ms(ts), "values": v} for ts, v in readings]}
    )


def paced(ticks: Iterable[tuple[int, np.ndarray]], speed: float) -> Iterator[tuple[int, np.ndarray]]:
    """Release ticks at ``speed`` times their own clock; ``speed <= 0`` means as fast as possible."""
    first_ts: int | None = None
    started = time.monotonic()
    for ts, values in ticks:
        if speed > 0:
            first_ts = ts if first_ts is None else first_ts
            due = started + (ts - first_ts) / 1000.0 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield ts, values
