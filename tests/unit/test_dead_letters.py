"""dead_letter_record(): every rejected message gets a dead letter the producer will take."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from stream_app.contracts import DeadLetter
from stream_app.worker.dead_letters import MAX_RECORD_BYTES, PREFIX_BYTES, dead_letter_record
from stream_app.pipeline.decode import Rejection, decode


def record(original: bytes, key: bytes | None = b"press-01", reason: str = "bad") -> tuple[bytes | None, DeadLetter, int]:
    k, value = dead_letter_record(Rejection(reason, original), topic="sensor-readings", partition=2, offset=9, key=key)
    return k, DeadLetter.model_validate_json(value), len(value) + (len(k) if k else 0)


def test_a_small_letter_keeps_the_whole_original_with_its_size_and_hash() -> None:
    raw = b'{"device_id": "press-01", "ts": 1}'
    key, letter, _ = record(raw)
    assert key == b"press-01"
    assert letter.original == raw.decode() and not letter.truncated
    assert letter.original_size == len(raw) and letter.original_sha256 == hashlib.sha256(raw).hexdigest()
    assert (letter.source_partition, letter.source_offset) == (2, 9)


@pytest.mark.parametrize(
    "original",
    [
        b"x" * 2_000_000,  # over the 1 MB message limit
        b'"' * 900_000,  # escapes to 1.8 MB
        b"\x00" * 200_000,  # escapes to 1.2 MB (\u0000)
        bytes(range(128, 256)) * 7_000,  # 900 KB, not UTF-8: base64
        orjson.dumps({"device_id": "d", "readings": [{"ts": i, "values": {"t": 1.0}} for i in range(100_000)]}),
    ],
    ids=["2MB", "quotes", "nul", "non-utf8", "100k-readings"],
)
def test_a_letter_too_large_for_the_producer_keeps_a_prefix_size_and_hash(original: bytes) -> None:
    _, letter, size = record(original, reason=decode(original).rejections[0].reason)
    assert size <= MAX_RECORD_BYTES
    assert letter.truncated
    assert letter.original_size == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    kept = letter.original.encode() if letter.original is not None else base64.b64decode(letter.original_b64 or "")
    assert 0 < len(kept) <= PREFIX_BYTES and original.startswith(kept)


def test_a_prefix_never_splits_a_utf8_character() -> None:
    original = "é".encode() * 600_000  # 1.2 MB of two-byte characters
    _, letter, _ = record(original)
    assert letter.truncated and letter.original is not None  # still text, not base64
    assert original.startswith(letter.original.encode())


def test_a_huge_key_and_reason_are_cut_so_the_letter_still_fits() -> None:
    key, letter, size = record(b"\x00" * 300_000, key=b"k" * 500_000, reason="r" * 100_000)
    assert size <= MAX_RECORD_BYTES
    assert key is not None and len(key) <= 1_024
    assert len(letter.reason) <= 2_003


def test_a_whole_message_s_dead_letter_fits_the_producer_however_large_the_message() -> None:
    # What the feedback consumer dead-letters (lifecycle.py): a message, not a part of one.
    from confluent_kafka import Message

    from stream_app.worker.dead_letters import message_dead_letter_record

    original = b'"' * 900_000  # escapes to 1.8 MB of JSON
    message = Message(topic="alert-feedback", partition=0, offset=42, key=b"k" * 5_000, value=original)
    key, value = message_dead_letter_record(message, "not a feedback message")
    assert len(value) + len(key or b"") <= MAX_RECORD_BYTES and key == b"k" * 1_024
    letter = DeadLetter.model_validate_json(value)
    assert letter.truncated and letter.original_size == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("alert-feedback", 0, 42)
    assert letter.reason == "not a feedback message"

    small = Message(topic="alert-feedback", partition=1, offset=7, key=None, value=b'{"alert_id": 1}')
    key, value = message_dead_letter_record(small, "bad")
    assert key is None and DeadLetter.model_validate_json(value).original == '{"alert_id": 1}'
