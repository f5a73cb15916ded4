"""Dead-letter records that always fit the producer's record limit.

A dead letter carries the original bytes as JSON text (escaped) or base64, so it can be several
times the size of the original: 900 KB of ``"`` characters escape to 1.8 MB, 200 KB of NUL bytes
to 1.2 MB. The producer refuses records over its limit (about 1 MB), and a dead letter that cannot
be sent is a message lost. So when the whole letter would not fit, it keeps a bounded prefix of the
original instead, with the original's size and the SHA-256 of all of it, and says so
(``truncated: true``).
"""

from __future__ import annotations

import orjson

from stream_app.contracts import DeadLetter
from stream_app.pipeline.decode import Rejection, dead_letter
from stream_app.worker.context import KafkaMessage, MessageContext

# Key plus value of one dead-letter record, well under the producer's 1,000,000-byte request limit
# (faust's ``producer_max_request_size``, librdkafka's ``message.max.bytes``) and its framing.
MAX_RECORD_BYTES = 900_000
# What a truncated letter keeps of its original: enough to see what the message was.
PREFIX_BYTES = 64 * 1024
# A reason or key longer than this is cut (a pydantic message can quote a long input).
_MAX_REASON_CHARS = 2_000
_MAX_KEY_BYTES = 1_024


def dead_letter_record(
    rejection: Rejection,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    max_bytes: int = MAX_RECORD_BYTES,
) -> tuple[bytes | None, bytes]:
    """The (key, value) of the dead letter for ``rejection``, together at most ``max_bytes``."""
    record_key = key if key is None or len(key) <= _MAX_KEY_BYTES else key[:_MAX_KEY_BYTES]
    reason = rejection.reason if len(rejection.reason) <= _MAX_REASON_CHARS else rejection.reason[:_MAX_REASON_CHARS] + "..."
    original = rejection.original
    budget = max_bytes - (len(record_key) if record_key else 0)
    letter = dead_letter(Rejection(reason, original), topic=topic, partition=partition, offset=offset, key=record_key)
    value = _json(letter)
    if len(value) <= budget:
        return record_key, value
    size, digest = letter.original_size, letter.original_sha256
    prefix = PREFIX_BYTES
    while True:
        cut = dead_letter(
            Rejection(reason, _utf8_safe_prefix(original, prefix)), topic=topic, partition=partition, offset=offset,
            key=record_key,
        )
        value = _json(cut.model_copy(update={"truncated": True, "original_size": size, "original_sha256": digest}))
        if len(value) <= budget or prefix == 0:
            return record_key, value
        prefix //= 2  # a huge key or worst-case escaping: keep less


def message_dead_letter_record(
    message: KafkaMessage, reason: str, *, max_bytes: int = MAX_RECORD_BYTES
) -> tuple[bytes | None, bytes]:
    """The (key, value) of the dead letter of a whole message (e.g. feedback the worker cannot use),
    within ``max_bytes`` like every other."""
    source = MessageContext.of(message)
    return dead_letter_record(
        Rejection(reason, source.value), topic=source.topic, partition=source.partition, offset=source.offset,
        key=source.key, max_bytes=max_bytes,
    )  # fmt: skip


def _utf8_safe_prefix(data: bytes, n: int) -> bytes:
    """``data[:n]``, less a UTF-8 sequence cut in half, so that valid text stays text (not base64)."""
    prefix = data[:n]
    for back in range(min(4, len(prefix)) + 1):
        try:
            (candidate := prefix[: len(prefix) - back]).decode("utf-8")
            return candidate
        except UnicodeDecodeError:
            continue
    return prefix  # not UTF-8 anyway: base64 of the raw prefix


def _json(letter: DeadLetter) -> bytes:
    return orjson.dumps(letter.model_dump(mode="json", exclude_none=False))
