"""Following the alerts topic with confluent-kafka, showing each alert id once."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Literal

from pydantic import ValidationError

from stream_app.contracts import Alert
from stream_app.config.settings import KafkaSettings
from stream_app.worker.topics import assigned_reader, follow


class SeenIds:
    """The last ``capacity`` alert ids, for dropping redelivered alerts."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, alert_id: str) -> bool:
        if alert_id in self._ids:
            return False
        self._ids[alert_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


def follow_alerts(
    settings: KafkaSettings, *, from_beginning: bool = False, max_alerts: int = 0, idle_s: float = 0.0
) -> Iterator[Alert]:
    """Yield alerts from the topic as they come. Uses manual assignment: no group, no commits."""
    # 500 ms, not the embedded profile's 20 ms: the worker writes each alert as a one-record batch,
    # and past ~30,000 of those the embedded broker answers short fetch waits with nothing (see stall.py).
    start: Literal["beginning", "end"] = "beginning" if from_beginning else "end"
    with assigned_reader(settings, settings.alerts_topic, start=start, name="tail", **{"fetch.wait.max.ms": 500}) as consumer:
        seen, shown = SeenIds(), 0
        for message in follow(consumer, idle_s):
            try:
                alert = Alert.model_validate_json(message.value() or b"")
            except ValidationError:
                continue  # not an alert of ours; the topic is shared with other producers
            if seen.first_time(alert.alert_id):
                yield alert
                shown += 1
                if max_alerts and shown >= max_alerts:
                    return
