"""The messages floorwatch reads and writes: readings, dead letters, alerts, failure labels.

These are the public contracts documented in the README; change them with care.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat

# Readings with values beyond this magnitude are treated as garbage rather than physics.
_MAX_ABS_VALUE = 1e12
# Year 9999: later timestamps cannot be dates, and would overflow date formatting downstream.
_MAX_EPOCH_MS = 253_402_300_799_999
_ALERT_NAMESPACE = uuid.UUID("5f1c9a7e-3b1d-4c57-9b8e-2f0d6a4c1e11")


def to_epoch_ms(value: object) -> int:
    """Accept epoch milliseconds (int/float) or an ISO-8601 string; return epoch ms."""
    if isinstance(value, bool):
        raise ValueError("ts must be epoch milliseconds or an ISO-8601 string")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("ts must be a finite epoch in milliseconds")
        ms = int(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"ts {value[:40]!r} is not ISO-8601") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        ms = int(parsed.timestamp() * 1000)
    else:
        raise ValueError("ts must be epoch milliseconds or an ISO-8601 string")
    if not 0 <= ms <= _MAX_EPOCH_MS:
        raise ValueError("ts must lie between 1970 and 9999")
    return ms


EpochMs = Annotated[int, BeforeValidator(to_epoch_ms)]
# The contract's limits, named once: the bulk decoder (pipeline/bulk_decode.py) checks the same ones over a batch.
DEVICE_ID_CHARS = r"[A-Za-z0-9._:/-]"
MAX_DEVICE_ID_LENGTH = 200
MAX_VALUES = 256  # sensor values in one reading
DeviceId = Annotated[str, Field(min_length=1, max_length=MAX_DEVICE_ID_LENGTH, pattern=rf"^{DEVICE_ID_CHARS}+$")]


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds to the ISO-8601 form used in every message we write."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


# Checked inside pydantic-core (no Python call per value): finite, and within a physical magnitude.
SensorValue = Annotated[StrictFloat, Field(allow_inf_nan=False, ge=-_MAX_ABS_VALUE, le=_MAX_ABS_VALUE)]


class _Values(BaseModel):
    model_config = ConfigDict(frozen=True)

    ts: EpochMs
    values: dict[str, SensorValue] = Field(min_length=1, max_length=MAX_VALUES)


class Reading(_Values):
    """One sensor reading of one device."""

    device_id: DeviceId


class ReadingBatch(BaseModel):
    """The batched form, for gateways that buffer readings of one device."""

    model_config = ConfigDict(frozen=True)

    device_id: DeviceId
    # Items are checked one by one (decode.py): a bad one is dead-lettered alone as ``readings[i]``.
    readings: list[object] = Field(min_length=1, max_length=10_000)


class DeadLetter(BaseModel):
    """A message that could not be used, with enough context to find and replay it."""

    reason: str
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    key: str | None = None
    # Original bytes as text when they are valid UTF-8, otherwise base64 in ``original_b64``.
    original: str | None = None
    original_b64: str | None = None
    received_at: str
    # The whole original's length and SHA-256. ``truncated``: the letter would not fit the producer's
    # record limit, so ``original``/``original_b64`` hold only a prefix of it (see dead_letters.py).
    original_size: int | None = None
    original_sha256: str | None = None
    truncated: bool = False


class Episode(BaseModel):
    """An alert episode: the span during which one device was judged anomalous."""

    episode_id: str
    # "update": the open episode escalated to a higher severity.
    state: Literal["open", "update", "closed"]
    started_at: str
    ended_at: str | None = None
    peak_ratio: float = Field(description="largest distance from normal in the episode; 1.0 is the alerting line")
    windows: int
    # Why a closed episode closed: "quiet", "new episode" (a new fault followed a quiet stretch),
    # "superseded" (a far larger fault or a stopped sensor followed at once) or "max duration".
    close_reason: str | None = None


class Alert(BaseModel):
    """An anomaly alert. ``alert_id`` is deterministic, so consumers can drop duplicates."""

    alert_id: str
    device_id: str
    window_start: str
    window_end: str
    score: float
    threshold: float
    severity: Literal["warning", "major", "critical"]
    feature_errors: dict[str, float]
    top_feature: str
    check_failures: list[str] = Field(default_factory=list)
    model_version: str
    detected_at: str
    episode: Episode

    @staticmethod
    def make_id(episode_id: str, state: str, model_version: str) -> str:
        return str(uuid.uuid5(_ALERT_NAMESPACE, f"{episode_id}|{state}|{model_version}"))


class FailureLabel(BaseModel):
    """Ground truth of one injected failure, published by the simulator."""

    device_id: str
    kind: str
    start: EpochMs
    end: EpochMs
    sensor: str | None = None
    magnitude: float | None = None
