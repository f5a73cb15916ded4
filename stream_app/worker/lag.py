"""The consumer group's lag per readings partition, as Prometheus and Kafka's own tools count it: the high
watermark less the group's committed offset. Sampled with the stall check (every few seconds, by the
consumer's progress probe, on its own thread), never per message.

Beside ``floorwatch_readings_lag`` (high watermark - this worker's position, what it has yet to read),
this one also counts what was read but not yet committed: the records a restart would read again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)

Partition = tuple[str, int]


def committed_lag(consumer: Consumer, highs: Mapping[Partition, int], timeout_s: float = 5.0) -> dict[Partition, int] | None:
    """High watermark - committed offset of each partition in ``highs`` (never committed: from its low
    watermark, where ``auto.offset.reset=earliest`` starts); None when the broker does not answer."""
    try:
        committed = consumer.committed([TopicPartition(t, p) for t, p in highs], timeout=timeout_s)
        lag: dict[Partition, int] = {}
        for tp in committed:
            where = (tp.topic, tp.partition)
            start = tp.offset
            if start < 0:
                start, _ = consumer.get_watermark_offsets(TopicPartition(*where), timeout=timeout_s, cached=False)
            # The embedded broker's high watermark can be low for multi-record batches (stall.py): never below 0.
            lag[where] = max(0, highs[where] - start)
        return lag
    except KafkaException as exc:
        log.debug("committed offsets unknown (%s)", exc.args[0].str())
        return None
