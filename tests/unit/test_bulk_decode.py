"""Bulk decoding gives exactly what decoding message by message gives: the same readings in the same
order, the same rejections with the same reasons, whichever path each message took."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from stream_app.contracts import Reading, to_epoch_ms
from stream_app.pipeline.bulk_decode import BulkDecoder, epoch_ms
from stream_app.pipeline.columns import ReadingColumns
from stream_app.pipeline.decode import decode

GOOD = {"device_id": "press-01", "ts": "2026-11-26T18:00:00.123Z", "values": {"temperature": 21.5, "vibration": 0.25}}


def variants() -> list[bytes | str | None]:
    def msg(**changes: object) -> bytes:
        return orjson.dumps({**GOOD, **changes})

    return [
        msg(),
        msg(ts=1_764_180_000_123),
        msg(ts="2026-11-26T18:00:00Z"),  # another spelling: the slow path, same answer
        msg(ts="2026-11-26T18:00:00.123+00:00"),
        msg(ts="2026-02-30T18:00:00.000Z"),
        msg(ts="1969-12-31T23:59:59.999Z"),
        msg(ts="2026-11-26T18:00:00.123z"),
        msg(ts=True),
        msg(ts=-5),
        msg(ts=1.5e12),
        b'{"device_id": "press-01", "ts": 1000000000000000000000000000000, "values": {"t": 1.0}}',
        msg(ts=2**63 - 1),
        msg(device_id=""),
        msg(device_id="bad id"),
        msg(device_id="x" * 201),
        msg(device_id="ok\n"),
        msg(device_id=7),
        msg(values={}),
        msg(values={"temperature": 1}),  # an int: the contract makes it a float
        msg(values={"temperature": True}),
        msg(values={"temperature": "1.0"}),
        msg(values={"temperature": 2e12}),
        msg(values={"temperature": -1e12}),
        msg(values={f"s{i}": 1.0 for i in range(257)}),
        msg(values=[1.0]),
        msg(extra="ignored by the contract"),
        b'{"device_id": "press-01", "ts": 1, "values": {"t": NaN}}',
        b'{"device_id": "press-01", "ts": 1, "values": {"t": 1e999}}',
        orjson.dumps({"device_id": "press-02", "readings": [{"ts": 1, "values": {"t": 1.0}}, {"ts": "x", "values": {}}, 5]}),
        orjson.dumps({"device_id": "press-03", "readings": [{"ts": 2, "values": {"t": 1.0}}]}),
        b"",
        None,
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
        GOOD_TEXT,
        b"x" * 1_000_001,
    ]


GOOD_TEXT = orjson.dumps(GOOD).decode()


def per_message(raws: list[bytes | str | None]) -> tuple[list[Reading], list[tuple[int, str, bytes]]]:
    readings, rejections = [], []
    for m, raw in enumerate(raws):
        decoded = decode(raw)
        readings.extend(decoded.readings)
        rejections.extend((m, r.reason, r.original) for r in decoded.rejections)
    return readings, rejections


@pytest.mark.parametrize("seed", range(5))
def test_bulk_decoding_equals_decoding_one_by_one(seed: int) -> None:
    raws = variants() * 3
    random.Random(seed).shuffle(raws)
    want_readings, want_rejections = per_message(raws)
    batch = BulkDecoder().decode(raws)
    assert list(batch.columns) == want_readings
    assert [(m, r.reason, r.original) for m, r in batch.rejections] == want_rejections
    assert [raws[m] is not None for m in batch.message_of] == [True] * len(want_readings)


def test_a_readings_part_is_its_own_message_or_its_item() -> None:
    raws: list[bytes | str | None] = [
        orjson.dumps(GOOD),
        orjson.dumps({"device_id": "press-02", "readings": [{"ts": 1, "values": {"t": 1.0}}, {"ts": 2, "values": {"t": 2.0}}]}),
    ]
    batch = BulkDecoder().decode(raws)
    assert batch.message_of == [0, 1, 1]
    assert 0 not in batch.decoded and 1 in batch.decoded  # the single form took the bulk path
    assert batch.part(0) == ("", None)
    where, part = batch.part(2)
    assert where == "readings[1]: " and part is not None and orjson.loads(part)["reading"]["ts"] == 2


def test_iso_timestamps_equal_the_contracts_to_the_millisecond() -> None:
    # The contract's float steps can land a millisecond low; the bulk path must land there too.
    rng = random.Random(3)
    stamps: list[object] = []
    for _ in range(20_000):
        second = rng.randrange(0, 9_000_000_000)
        at = datetime.fromtimestamp(second, tz=timezone.utc) + timedelta(milliseconds=rng.randrange(1000))
        stamps.append(at.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    stamps += ["2024-02-29T00:00:00.000Z", "2023-02-29T00:00:00.000Z", "2100-02-29T00:00:00.000Z", "2026-11-26T24:00:00.000Z",
               "2026-11-26T23:59:60.000Z", "1970-01-01T00:00:00.000Z", 0, 253_402_300_799_999, 253_402_300_800_000, False]  # fmt: skip
    ms, ok = epoch_ms(stamps)
    assert ok.sum() > 15_000
    texts = [s for s in stamps if isinstance(s, str) and len(s) == 24]  # the all-strings route: the same answers
    assert epoch_ms(texts)[0] == [m for s, m in zip(stamps, ms) if s in texts]
    assert epoch_ms(texts)[1].tolist() == [k for s, k in zip(stamps, ok.tolist()) if s in texts]
    for stamp, got, certain in zip(stamps, ms, ok.tolist()):
        if certain:
            assert got == to_epoch_ms(stamp), stamp


def test_columns_of_readings_give_the_same_objects_back() -> None:
    readings = [Reading.model_validate({**GOOD, "ts": t}) for t in (1, 2, 3)]
    columns = ReadingColumns.of(readings)
    assert [columns[i] for i in range(3)] == readings and columns[1] is readings[1]
    assert columns.take([2, 0]).ts == [3, 1] and columns.take([2, 0])[0] is readings[2]
    assert columns[-1] is readings[2] and list(columns[1:]) == readings[1:]
