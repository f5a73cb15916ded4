"""Oversized and poisonous messages against the real broker and worker: each gets exactly one dead
letter that fits the producer's limit, and no reading beside them is lost."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
import uuid

import orjson
from confluent_kafka import Producer

from producers.publish import reading_json
from stream_app.contracts import DeadLetter
from stream_app.config.kafka_config import producer_config
from stream_app.config.settings import Settings
from stream_app.ops.dead_letter_reader import follow_letters, recent_letters
from stream_app.worker.topics import ensure_topics

from tests.support.services import cli_env, topic_messages, wait_scored

GOOD = {"temperature": 0.06, "vibration": 0.075, "motor_rpm": 0.045, "motor_amps": 0.084}


def _bad_messages(now_ms: int) -> dict[str, bytes]:
    """Key -> message, each unusable, several too large for a dead letter holding them whole."""
    reading = {"ts": 1, "values": GOOD}
    return {
        "big-2mb": b"{" + b" " * 2_000_000 + b"}",
        "big-100k": orjson.dumps(
            {"device_id": "big-100k", "readings": [{"ts": now_ms - 200_000 + i, "values": GOOD} for i in range(100_000)]}
        ),
        "big-quotes": b'"' * 900_000,
        "big-nonutf8": bytes(range(128, 256)) * 7_000,
        "big-nul": b"\x00" * 200_000,
        # Under the 1 MB message limit, over the 10,000-readings limit of a batched message.
        "big-10001": orjson.dumps({"device_id": "big-10001", "readings": [reading] * 10_001}),
    }


def test_oversized_messages_each_get_one_dead_letter_and_cost_no_good_reading(settings: Settings, worker) -> None:
    # Our gateway-side producer takes records up to 20 MB (the broker does too); the worker's
    # producer keeps its default ~1 MB limit, which its dead letters must fit.
    producer = Producer(producer_config(settings, **{"message.max.bytes": 20_000_000}))
    now = int(time.time() * 1000)
    bad = _bad_messages(now)
    if settings.kafka_profile == "kafka":
        # Apache Kafka refuses records over its message.max.bytes (1 MB) at produce time: the gateway
        # gets the error, and no such message ever reaches the worker. The rest must be dead-lettered.
        bad = {key: value for key, value in bad.items() if len(value) < 1_000_000}
    last_ts: dict[str, int] = {}
    # Good readings of 24 devices around the bad messages, so they share the worker's batches.
    for i in range(24):
        device = f"good-{i}"
        last_ts[device] = now - 60_000 + i
        producer.produce(settings.readings_topic, key=device.encode(), value=reading_json(device, last_ts[device], GOOD))
        if i % 4 == 1 and i // 4 < len(bad):
            key = list(bad)[i // 4]
            producer.produce(settings.readings_topic, key=key.encode(), value=bad[key])
    assert producer.flush(60) == 0

    wait_scored(settings, last_ts, timeout_s=120)  # every good reading scored
    letters = [DeadLetter.model_validate_json(v) for v in topic_messages(settings, settings.dlq_topic)]
    for key, original in bad.items():
        ours = [letter for letter in letters if letter.key == key]
        assert len(ours) == 1, (key, [letter.reason for letter in ours])
        [letter] = ours
        assert letter.original_size == len(original)
        assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
        assert letter.truncated  # each is too large to carry whole
    assert not [letter for letter in letters if (letter.key or "").startswith("good-")]


def _letter(key: str) -> bytes:
    return DeadLetter(reason=f"test {key}", source_topic="sensor-readings", source_partition=0, source_offset=7, key=key,
                      original="{", received_at="2026-01-01T00:00:00.000Z", original_size=1).model_dump_json().encode()  # fmt: skip


class _LetterWriter:
    """Records written to the dead-letter topic as the worker writes them: one record per batch (the
    embedded broker's high watermark, where the readers start, counts a batch of several as one: see
    stall.py), and on Apache Kafka each in a transaction (its commit marker takes an offset too)."""

    def __init__(self, settings: Settings) -> None:
        self.topic, self.transactional = settings.dlq_topic, settings.kafka_profile == "kafka"
        extra = {"transactional.id": f"test-letters-{uuid.uuid4().hex[:8]}"} if self.transactional else {}
        self.producer = Producer(producer_config(settings, **extra))
        if self.transactional:
            self.producer.init_transactions(30)

    def write(self, value: bytes, key: str | None = None) -> None:
        if self.transactional:
            self.producer.begin_transaction()
        self.producer.produce(self.topic, key=key.encode() if key else None, value=value)
        if self.transactional:
            self.producer.commit_transaction(30)
        else:
            assert self.producer.flush(30) == 0


def test_dlq_recent_and_tail_read_from_the_end(settings: Settings) -> None:
    # A topic of its own: the worker's letters (the test above) would be among the newest.
    s = settings.model_copy(update={"dlq_topic": f"dlq-reader-{uuid.uuid4().hex[:8]}"})
    ensure_topics(s)
    assert recent_letters(s) == []  # an empty topic: read to its end, nothing to wait for
    writer = _LetterWriter(s)
    for i in range(5):
        writer.write(_letter(f"old-{i}"), key=f"old-{i}")
    writer.write(b"\xff not a letter")

    env = cli_env(s)
    recent = subprocess.run([sys.executable, "-m", "stream_app", "dlq", "recent", "-n", "3", "--json"], env=env,
                            capture_output=True, text=True, timeout=90)  # fmt: skip
    assert recent.returncode == 0, recent.stderr
    newest = [json.loads(line) for line in recent.stdout.splitlines()]  # newest first
    assert [v["key"] for v in newest] == [None, "old-4", "old-3"]  # all 3, commit markers or not
    assert newest[0]["reason"] == "(not a floorwatch dead letter)" and newest[1]["reason"] == "test old-4"
    assert [v.key for v in recent_letters(s, 20)] == [None, *(f"old-{i}" for i in reversed(range(5)))]

    # tail starts at the end: the letters already there are not shown again.
    tail = subprocess.run([sys.executable, "-m", "stream_app", "dlq", "tail", "--json", "--idle-timeout", "2"], env=env,
                          capture_output=True, text=True, timeout=90)  # fmt: skip
    assert tail.returncode == 0 and tail.stdout == "", tail.stderr

    # A letter written while following is shown (written until one is seen: the reader's start takes a moment).
    stop = threading.Event()

    def write_new() -> None:
        for i in range(100):
            if stop.wait(0.3):
                return
            writer.write(_letter(f"new-{i}"))

    thread = threading.Thread(target=write_new)
    thread.start()
    letters = follow_letters(s, idle_s=30)
    try:
        first = next(letters, None)
    finally:
        letters.close()
        stop.set()
        thread.join()
    assert first is not None and (first.key or "").startswith("new-") and first.source == "sensor-readings[0]@7"
