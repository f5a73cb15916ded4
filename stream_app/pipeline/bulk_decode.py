"""A micro-batch of message bytes -> columns of readings, checked over the whole batch at once.

The common message, one reading in the single form with an ISO-8601 ``...T..:..:...mmmZ`` or
integer timestamp, is parsed with orjson and then checked in bulk: the timestamps parsed and
range-checked as arrays, the sensor values checked as one float array. Whatever this path does
not take for certain (any doubt at all: another form or shape, an extra field, an integer sensor
value, another timestamp spelling, a value out of range) goes through ``decode.decode`` as before,
so every rejection and its reason text is exactly that function's. What this path accepts,
``decode`` accepts too, with the same values (tests/unit/test_bulk_decode.py holds it to that).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import orjson

from stream_app.contracts import _MAX_ABS_VALUE, _MAX_EPOCH_MS, DEVICE_ID_CHARS, MAX_DEVICE_ID_LENGTH, MAX_VALUES
from stream_app.pipeline.columns import ReadingColumns
from stream_app.pipeline.decode import MAX_MESSAGE_BYTES, Decoded, Rejection, decode

_SINGLE_KEYS = frozenset(("device_id", "ts", "values"))
_DEVICE_ID = re.compile(rf"{DEVICE_ID_CHARS}{{1,{MAX_DEVICE_ID_LENGTH}}}")  # contracts.DeviceId, as a full match
_KNOWN_IDS_LIMIT = 1_000_000  # device ids already checked: a flood of new ones clears the cache
_ISO_LENGTH = len("2026-01-01T00:00:00.000Z")
# Character positions of "YYYY-MM-DDTHH:MM:SS.mmmZ".
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22])
_SEPARATORS = np.array([4, 7, 10, 13, 16, 19, 23])
_SEPARATOR_CHARS = np.array([ord(c) for c in "--T::.Z"], np.uint32)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


@dataclass(slots=True)
class BatchDecoded:
    """A batch's readings in message order, and its rejections with their message's index."""

    columns: ReadingColumns
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)
    # Per reading: the index of its message in the batch.
    message_of: list[int] = field(default_factory=list)
    # The messages ``decode`` handled (batched form, or not certain), by index: a reading the
    # detector refuses is dead-lettered as its own part of such a message (``Decoded.part``).
    decoded: dict[int, Decoded] = field(default_factory=dict)
    # Per such message: the index of its first reading in ``columns``.
    first_row: dict[int, int] = field(default_factory=dict)

    def part(self, row: int) -> tuple[str, bytes | None]:
        """The reason prefix and bytes of reading ``row``'s part of its message (``Decoded.part``)."""
        message = self.message_of[row]
        decoded = self.decoded.get(message)
        if decoded is None:
            return "", None  # the single form: the reading is the whole message
        return decoded.part(row - self.first_row[message])


class BulkDecoder:
    """Decodes batches; remembers the device ids it has checked (they repeat in every batch)."""

    def __init__(self) -> None:
        self._known_ids: set[str] = set()

    def decode(self, raws: Sequence[bytes | str | None]) -> BatchDecoded:
        try:
            index, columns = self._fast(raws)
        except Exception:  # the boundary, as decode's: a bug here sends the batch the slow way
            index, columns = [], ReadingColumns([], [], [])
        if len(index) == len(raws):  # the usual batch: every message took the bulk path
            return BatchDecoded(columns, message_of=index)
        out = BatchDecoded(ReadingColumns([], [], []))
        devices, stamps, values = out.columns.device_ids, out.columns.ts, out.columns.values
        fast = dict(zip(index, range(len(index))))
        for m, raw in enumerate(raws):
            k = fast.get(m)
            if k is not None:
                devices.append(columns.device_ids[k])
                stamps.append(columns.ts[k])
                values.append(columns.values[k])
                out.message_of.append(m)
                continue
            decoded = decode(raw)
            if decoded.readings:
                out.decoded[m] = decoded
                out.first_row[m] = len(devices)
                for reading in decoded.readings:
                    devices.append(reading.device_id)
                    stamps.append(reading.ts)
                    values.append(reading.values)
                    out.message_of.append(m)
            out.rejections.extend((m, rejection) for rejection in decoded.rejections)
        return out

    def _fast(self, raws: Sequence[bytes | str | None]) -> tuple[list[int], ReadingColumns]:
        """The messages of the batch this path accepts for certain (their indices), and their readings."""
        loads, error = orjson.loads, orjson.JSONDecodeError
        index: list[int] = []
        payloads: list[dict[str, object]] = []
        for m, raw in enumerate(raws):
            if type(raw) is not bytes or not 0 < len(raw) <= MAX_MESSAGE_BYTES:
                continue
            try:
                payload = loads(raw)
            except error:
                continue
            if type(payload) is dict and payload.keys() == _SINGLE_KEYS:
                index.append(m)
                payloads.append(payload)
        devices = [p["device_id"] for p in payloads]
        values = [p["values"] for p in payloads]
        ms, ok = epoch_ms([p["ts"] for p in payloads])
        ok &= self._ids_ok(devices) & _values_ok(values)
        if not ok.all():
            kept = np.flatnonzero(ok).tolist()
            index, devices, ms, values = [index[k] for k in kept], [devices[k] for k in kept], [ms[k] for k in kept], [values[k] for k in kept]
        return index, ReadingColumns(devices, ms, values)  # type: ignore[arg-type]  # checked above

    def _ids_ok(self, devices: list[object]) -> np.ndarray:
        known = self._known_ids
        ok = np.ones(len(devices), bool)
        for k, device in enumerate(devices):
            if device in known:
                continue
            if type(device) is str and _DEVICE_ID.fullmatch(device):
                if len(known) >= _KNOWN_IDS_LIMIT:
                    known.clear()
                known.add(device)
            else:
                ok[k] = False
        return ok


def _values_ok(values: list[object]) -> np.ndarray:
    """Per reading: a dict of 1 to 256 floats (not ints: the contract makes those floats), each
    finite and within the contract's magnitude."""
    if set(map(type, values)) <= {dict}:  # (map and set: loops in C, where the usual batch passes)
        ok = np.ones(len(values), bool)
    else:
        ok = np.fromiter((type(v) is dict for v in values), bool, len(values))
        values = [v if good else {} for v, good in zip(values, ok.tolist())]
    dicts: list[dict[str, object]] = values  # type: ignore[assignment]  # every entry is a dict now
    counts = np.fromiter(map(len, dicts), np.int64, len(dicts))
    ok &= (counts > 0) & (counts <= MAX_VALUES)
    flat = list(itertools.chain.from_iterable(map(dict.values, dicts)))
    if set(map(type, flat)) <= {float}:
        is_float = np.ones(len(flat), bool)
    else:
        is_float = np.fromiter((type(v) is float for v in flat), bool, len(flat))
        flat = [v if f else 0.0 for v, f in zip(flat, is_float.tolist())]
    numbers = np.fromiter(flat, np.float64, len(flat))
    good = is_float & (np.abs(numbers) <= _MAX_ABS_VALUE)  # NaN and inf fail the comparison
    # Every value of a reading good: the running count of bad values does not grow over its span.
    bad_before = np.concatenate([[0], np.cumsum(~good)])
    ends = np.cumsum(counts)
    return ok & (bad_before[ends] == bad_before[ends - counts])


def epoch_ms(stamps: Sequence[object]) -> tuple[list[int], np.ndarray]:
    """Epoch ms of timestamps as ``contracts.to_epoch_ms`` gives them, and which were certain: integers
    (not bools) in range, and strings of exactly the form ``YYYY-MM-DDTHH:MM:SS.mmmZ`` of valid dates.

    For a string the contract computes ``int(datetime.timestamp() * 1000)``, and the float product
    can land a millisecond low; this does the same float arithmetic (microseconds / 1e6 * 1000,
    exact while the microseconds fit a double's 53 bits: until the year 2255).
    """
    n = len(stamps)
    ms = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    if set(map(type, stamps)) <= {str}:
        strings = cast("list[str]", stamps)
        if set(map(len, strings)) <= {_ISO_LENGTH}:  # the usual batch: one buffer of characters
            try:
                return _iso_ms(np.frombuffer("".join(strings).encode("ascii"), np.uint8).reshape(n, _ISO_LENGTH))
            except UnicodeEncodeError:
                pass
    ints = [k for k, s in enumerate(stamps) if type(s) is int]
    if ints:
        # Python ints of any size: compare before converting.
        good = [k for k in ints if 0 <= cast(int, stamps[k]) <= _MAX_EPOCH_MS]
        ms[good] = [cast(int, stamps[k]) for k in good]
        ok[good] = True
    texts = [k for k, s in enumerate(stamps) if type(s) is str and len(s) == _ISO_LENGTH]
    if texts:
        rows = np.array(texts)
        codes = np.array([stamps[k] for k in texts], f"<U{_ISO_LENGTH}").view(np.uint32).reshape(len(texts), _ISO_LENGTH)
        text_ms, valid = _iso_ms(codes)
        ms[rows] = text_ms
        ok[rows] = valid
    return ms.tolist(), ok


def _iso_ms(chars: np.ndarray) -> tuple[list[int], np.ndarray]:
    """``epoch_ms`` of ``YYYY-MM-DDTHH:MM:SS.mmmZ`` strings given as (n, 24) character codes."""
    digits = chars[:, _DIGITS].astype(np.int64) - ord("0")
    shape = ((digits >= 0) & (digits <= 9)).all(axis=1) & (chars[:, _SEPARATORS] == _SEPARATOR_CHARS).all(axis=1)
    d = np.where(shape[:, None], digits, 0)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    hour, minute, second = d[:, 8] * 10 + d[:, 9], d[:, 10] * 10 + d[:, 11], d[:, 12] * 10 + d[:, 13]
    milli = d[:, 14] * 100 + d[:, 15] * 10 + d[:, 16]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    valid_month = (month >= 1) & (month <= 12)
    month_days = _DAYS_IN_MONTH[np.where(valid_month, month, 0)] + (leap & (month == 2))
    valid = shape & (year >= 1970) & valid_month & (day >= 1) & (day <= month_days) & (hour < 24) & (minute < 60) & (second < 60)
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    micros = ((days * 86400 + hour * 3600 + minute * 60 + second) * 1000 + milli) * 1000
    valid &= micros <= 2**53
    stamp = (micros.astype(np.float64) / 1e6 * 1000.0).astype(np.int64)  # the contract's float steps
    valid &= stamp <= _MAX_EPOCH_MS
    return np.where(valid, stamp, 0).tolist(), valid
