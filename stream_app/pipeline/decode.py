"""Raw message bytes -> validated readings, or reasons for rejecting them.

``decode`` never raises: whatever the bytes are, the caller gets the usable readings and a
reason for each unusable part, which it sends to the dead-letter topic.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import cast

import orjson
from pydantic import TypeAdapter, ValidationError

from stream_app.contracts import DeadLetter, Reading, ReadingBatch

# Larger messages are refused before parsing so one bad gateway cannot stall a worker.
MAX_MESSAGE_BYTES = 1_000_000
_READINGS = TypeAdapter(list[Reading])
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}
# Plainer words than pydantic's for a sensor value's bounds (see contracts.SensorValue).
_SENSOR_VALUE_ERRORS = {
    "finite_number": "value is not finite",
    "less_than_equal": "value out of range (magnitude over 1e12)",
    "greater_than_equal": "value out of range (magnitude over 1e12)",
}


@dataclass(slots=True)
class Rejection:
    """An unusable message or part of one: what it was and why it was refused."""

    reason: str
    original: bytes


@dataclass(slots=True)
class Decoded:
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # Batched form only: each reading's index in ``readings`` of the message, and the raw items,
    # so a reading the detector refuses later is dead-lettered as ``readings[i]`` with its own item.
    indices: list[int] | None = None
    items: list[object] | None = None

    def part(self, k: int) -> tuple[str, bytes | None]:
        """The ``readings[i]: `` reason prefix and the item's bytes of the k-th reading (batched
        form), or ``("", None)``: the reading is the whole message."""
        if self.indices is None or self.items is None:
            return "", None
        i = self.indices[k]
        return f"readings[{i}]: ", orjson.dumps({"device_id": self.readings[k].device_id, "reading": self.items[i]}, default=str)


def decode(raw: bytes | str | None) -> Decoded:
    """Decode one message in either the single or the batched reading form."""
    try:
        return _decode(raw)
    except Exception as exc:  # the boundary: a bug here must not stop the worker
        return Decoded(rejections=[Rejection(f"decoder error: {type(exc).__name__}", _as_bytes(raw))])


def _decode(raw: bytes | str | None) -> Decoded:
    original = _as_bytes(raw)
    if not original:
        return _reject("empty message", original)
    if len(original) > MAX_MESSAGE_BYTES:
        return _reject(f"message too large ({len(original)} bytes > {MAX_MESSAGE_BYTES})", original)
    try:
        payload = orjson.loads(original)
    except orjson.JSONDecodeError as exc:
        return _reject(f"not valid JSON: {exc}", original)
    if not isinstance(payload, dict):
        return _reject(f"expected a JSON object, got {type(payload).__name__}", original)

    if "readings" in payload:
        return _decode_batch(payload, original)
    try:
        return Decoded(readings=[Reading.model_validate(payload)])
    except ValidationError as exc:
        return _reject(describe(exc), original)


def _decode_batch(payload: dict[str, object], original: bytes) -> Decoded:
    try:
        batch = ReadingBatch.model_validate(payload)
    except ValidationError as exc:
        return _reject(describe(exc), original)
    raw = batch.readings
    if all(isinstance(item, dict) for item in raw):
        items = [{**item, "device_id": batch.device_id} for item in cast("list[dict[str, object]]", raw)]
        try:
            # All good: one call into pydantic-core.
            return Decoded(readings=_READINGS.validate_python(items), indices=list(range(len(raw))), items=raw)
        except ValidationError:
            pass  # some are bad: sort them one by one, keeping the usable ones
    indices: list[int] = []
    result = Decoded(indices=indices, items=raw)
    for index, item in enumerate(raw):
        try:
            if not isinstance(item, dict):
                raise _NotAnObject(_JSON_TYPES.get(type(item), type(item).__name__))
            result.readings.append(Reading.model_validate({**item, "device_id": batch.device_id}))
            indices.append(index)
        except (ValidationError, _NotAnObject) as exc:
            part = orjson.dumps({"device_id": batch.device_id, "reading": item}, default=str)
            why = describe(exc) if isinstance(exc, ValidationError) else f"expected a JSON object, got {exc}"
            result.rejections.append(Rejection(f"readings[{index}]: {why}", part))
    return result


class _NotAnObject(Exception):
    """A batched message's item that is not a JSON object."""


def describe(exc: ValidationError) -> str:
    """A one-line reason from a pydantic error, e.g. ``values.temperature: Input should be a valid number``."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {_SENSOR_VALUE_ERRORS.get(error['type'], error['msg']) if where.startswith('values.') else error['msg']}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def dead_letter(
    rejection: Rejection,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> DeadLetter:
    """Wrap a rejection with its source coordinates, keeping the original bytes."""
    try:
        text, b64 = rejection.original.decode("utf-8"), None
    except UnicodeDecodeError:
        text, b64 = None, base64.b64encode(rejection.original).decode("ascii")
    return DeadLetter(
        reason=rejection.reason,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        key=key.decode("utf-8", "replace") if key else None,
        original=text,
        original_b64=b64,
        received_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        original_size=len(rejection.original),
        original_sha256=hashlib.sha256(rejection.original).hexdigest(),
    )


def _reject(reason: str, original: bytes) -> Decoded:
    return Decoded(rejections=[Rejection(reason, original)])


def _as_bytes(raw: bytes | str | None) -> bytes:
    if raw is None:
        return b""
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogatepass")
    return bytes(raw)
