"""decode(): raw message bytes -> readings, or a reason for every part that was refused."""

from __future__ import annotations

import base64
import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.contracts import DeadLetter, iso_ms
from stream_app.pipeline.decode import MAX_MESSAGE_BYTES, Decoded, Rejection, dead_letter, decode


def message(**fields: object) -> bytes:
    return orjson.dumps(fields)


def reading(**overrides: object) -> bytes:
    fields: dict[str, object] = {"device_id": "press-01", "ts": 1_700_000_000_000, "values": {"temp": 21.5}}
    fields.update(overrides)
    return orjson.dumps(fields)


def only_rejection(decoded: Decoded) -> Rejection:
    assert decoded.readings == []
    assert len(decoded.rejections) == 1
    return decoded.rejections[0]


# --- the single form -------------------------------------------------------------------------


def test_single_reading_with_iso_timestamp_in_utc() -> None:
    decoded = decode(reading(ts="2024-01-01T00:00:00.250Z", values={"temp": 21.5, "rpm": 1200.0}))

    assert decoded.rejections == []
    [r] = decoded.readings
    assert r.device_id == "press-01"
    assert r.ts == 1_704_067_200_250
    assert r.values == {"temp": 21.5, "rpm": 1200.0}


def test_single_reading_with_epoch_ms_timestamp() -> None:
    decoded = decode(reading(ts=1_700_000_000_123))

    assert decoded.rejections == []
    [r] = decoded.readings
    assert r.ts == 1_700_000_000_123


def test_integer_values_are_accepted_as_numbers() -> None:
    [r] = decode(reading(values={"temp": 21})).readings
    assert r.values == {"temp": 21.0}


def test_str_input_is_decoded_like_bytes() -> None:
    assert decode(reading().decode()).readings == decode(reading()).readings


# --- the batched form ------------------------------------------------------------------------


def test_batch_keeps_good_readings_and_rejects_each_bad_one_by_index() -> None:
    raw = message(
        device_id="press-01",
        readings=[
            {"ts": 1000, "values": {"temp": 1.0}},
            {"ts": 2000, "values": {"temp": "hot"}},  # wrong type
            {"ts": 3000, "values": {"temp": 3.0}},
            {"values": {"temp": 4.0}},  # no ts
            {"ts": 5000, "values": {"temp": 5.0}},
        ],
    )

    decoded = decode(raw)

    assert [(r.device_id, r.ts, r.values["temp"]) for r in decoded.readings] == [
        ("press-01", 1000, 1.0),
        ("press-01", 3000, 3.0),
        ("press-01", 5000, 5.0),
    ]
    assert len(decoded.rejections) == 2
    first, second = decoded.rejections
    assert first.reason.startswith("readings[1]: ")
    assert "values.temp" in first.reason
    assert second.reason.startswith("readings[3]: ")
    assert "ts" in second.reason
    # A rejected part carries its own reading (with the batch's device), not the whole batch.
    assert orjson.loads(first.original) == {
        "device_id": "press-01",
        "reading": {"ts": 2000, "values": {"temp": "hot"}},
    }


def test_batch_device_id_overrides_a_device_id_inside_a_reading() -> None:
    raw = message(device_id="press-01", readings=[{"device_id": "other", "ts": 1, "values": {"t": 1.0}}])
    [r] = decode(raw).readings
    assert r.device_id == "press-01"


@pytest.mark.parametrize(
    "batch",
    [
        {"device_id": "press-01", "readings": []},
        {"device_id": "press 01", "readings": [{"ts": 1, "values": {"t": 1.0}}]},
        {"readings": [{"ts": 1, "values": {"t": 1.0}}]},
    ],
    ids=["empty-list", "bad-device", "no-device"],
)
def test_a_malformed_batch_is_rejected_whole(batch: dict[str, object]) -> None:
    raw = orjson.dumps(batch)
    rejection = only_rejection(decode(raw))
    assert rejection.original == raw


def test_a_batch_item_that_is_not_an_object_is_rejected_alone() -> None:
    good = {"ts": 1, "values": {"t": 1.0}}
    decoded = decode(message(device_id="press-01", readings=[good, 7, {**good, "ts": 2}]))
    assert [r.ts for r in decoded.readings] == [1, 2]  # the good readings are kept
    [rejection] = decoded.rejections
    assert rejection.reason == "readings[1]: expected a JSON object, got a number"
    assert orjson.loads(rejection.original) == {"device_id": "press-01", "reading": 7}
    # Each kept reading knows its place, for a dead letter the detector asks for later.
    assert decoded.part(1) == ("readings[2]: ", orjson.dumps({"device_id": "press-01", "reading": {**good, "ts": 2}}))


def test_a_single_reading_is_its_own_whole_message() -> None:
    assert decode(reading()).part(0) == ("", None)


# --- messages that are not a reading at all --------------------------------------------------


def test_not_json() -> None:
    rejection = only_rejection(decode(b"temp=21.5"))
    assert rejection.reason.startswith("not valid JSON")
    assert rejection.original == b"temp=21.5"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[1, 2, 3]", "list"), (b"42", "int"), (b"4.2", "float"), (b'"a reading"', "str"), (b"null", "NoneType")],
)
def test_not_an_object(raw: bytes, kind: str) -> None:
    rejection = only_rejection(decode(raw))
    assert rejection.reason == f"expected a JSON object, got {kind}"


@pytest.mark.parametrize("raw", [b"", "", None], ids=["empty-bytes", "empty-str", "none"])
def test_empty_message(raw: bytes | str | None) -> None:
    rejection = only_rejection(decode(raw))
    assert rejection.reason == "empty message"
    assert rejection.original == b""


def test_too_large_message_is_refused_before_parsing() -> None:
    padding = "x" * MAX_MESSAGE_BYTES
    raw = reading(comment=padding)  # otherwise a valid reading
    assert len(raw) > MAX_MESSAGE_BYTES

    rejection = only_rejection(decode(raw))

    assert rejection.reason.startswith("message too large")
    assert str(MAX_MESSAGE_BYTES) in rejection.reason
    assert rejection.original == raw


def test_message_of_exactly_the_limit_is_parsed() -> None:
    base = reading(comment="")
    raw = reading(comment="x" * (MAX_MESSAGE_BYTES - len(base)))
    assert len(raw) == MAX_MESSAGE_BYTES
    assert len(decode(raw).readings) == 1


def test_non_utf8_bytes() -> None:
    raw = b'{"device_id": "press-01", "ts": 1, "values": {"t\xff": 1.0}}'
    rejection = only_rejection(decode(raw))
    assert rejection.reason.startswith("not valid JSON")
    assert rejection.original == raw


# --- field validation ------------------------------------------------------------------------


def test_missing_device_id() -> None:
    raw = message(ts=1, values={"temp": 1.0})
    assert only_rejection(decode(raw)).reason == "device_id: Field required"


def test_missing_values() -> None:
    raw = message(device_id="press-01", ts=1)
    assert only_rejection(decode(raw)).reason == "values: Field required"


def test_null_values() -> None:
    assert only_rejection(decode(reading(values=None))).reason.startswith("values: ")


def test_empty_values() -> None:
    assert only_rejection(decode(reading(values={}))).reason.startswith("values: ")


@pytest.mark.parametrize("value", ["21.5", True, False, None, [1.0], {"v": 1.0}])
def test_wrong_value_types(value: object) -> None:
    rejection = only_rejection(decode(reading(values={"temp": value})))
    assert rejection.reason.startswith("values.temp: ")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_numbers_are_not_json(literal: bytes) -> None:
    raw = b'{"device_id": "press-01", "ts": 1, "values": {"temp": ' + literal + b"}}"
    rejection = only_rejection(decode(raw))
    assert rejection.reason.startswith("not valid JSON")


@pytest.mark.parametrize("literal", [b"1e300", b"-1e300", b"1e13", b"1000000000000000000000000000000"])
def test_huge_numbers_are_out_of_range(literal: bytes) -> None:
    raw = b'{"device_id": "press-01", "ts": 1, "values": {"temp": ' + literal + b"}}"
    rejection = only_rejection(decode(raw))
    assert rejection.reason == "values.temp: value out of range (magnitude over 1e12)"


def test_large_but_plausible_number_is_accepted() -> None:
    [r] = decode(reading(values={"temp": 1e12})).readings
    assert r.values["temp"] == 1e12


@pytest.mark.parametrize("device_id", ["press 01", "press\t01", "", "x" * 201, "presse-ü"])
def test_bad_device_ids(device_id: str) -> None:
    rejection = only_rejection(decode(reading(device_id=device_id)))
    assert rejection.reason.startswith("device_id: ")


def test_longest_allowed_device_id() -> None:
    assert len(decode(reading(device_id="x" * 200)).readings) == 1


@pytest.mark.parametrize("ts", ["yesterday", True, -1, None, [1]])
def test_bad_timestamps(ts: object) -> None:
    assert only_rejection(decode(reading(ts=ts))).reason.startswith("ts: ")


@pytest.mark.parametrize("ts", [1e20, 2**63], ids=["1e20", "2**63"])
def test_timestamps_beyond_any_date_are_rejected(ts: object) -> None:
    decoded = decode(reading(ts=ts))
    for r in decoded.readings:
        iso_ms(r.ts)  # what Detector._push does with a reading from the future; raises today
    assert decoded.readings == []


def test_iso_timestamp_before_the_epoch_is_rejected_like_a_negative_number() -> None:
    only_rejection(decode(reading(ts="1960-01-01T00:00:00Z")))


# --- dead letters ----------------------------------------------------------------------------


def test_dead_letter_keeps_utf8_original_as_text_and_the_source_coordinates() -> None:
    rejection = decode(b"{not json, but caf\xc3\xa9}").rejections[0]

    letter = dead_letter(rejection, topic="sensor-readings", partition=3, offset=42, key=b"press-01")

    assert isinstance(letter, DeadLetter)
    assert letter.reason == rejection.reason
    assert letter.original == "{not json, but café}"
    assert letter.original_b64 is None
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("sensor-readings", 3, 42)
    assert letter.key == "press-01"
    assert letter.received_at.endswith("+00:00")


def test_dead_letter_keeps_non_utf8_original_as_base64() -> None:
    raw = b"\x00\xff\xfe binary \x80"
    rejection = only_rejection(decode(raw))

    letter = dead_letter(rejection, topic="sensor-readings")

    assert letter.original is None
    assert base64.b64decode(letter.original_b64 or "") == raw
    assert (letter.source_partition, letter.source_offset, letter.key) == (None, None, None)


def test_dead_letter_of_a_batch_part() -> None:
    raw = message(device_id="press-01", readings=[{"ts": 1, "values": {"t": "x"}}])
    letter = dead_letter(only_rejection(decode(raw)), topic="t", key=b"\xffkey")
    assert orjson.loads(letter.original or "") == {"device_id": "press-01", "reading": {"ts": 1, "values": {"t": "x"}}}
    assert letter.key == "\ufffdkey"  # an undecodable key is kept, with replacement characters


# --- properties: decode never raises and never loses a message silently ---------------------

# What orjson can write: no lone surrogates, integers within 64 bits, finite floats.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=20,
)
# Objects shaped like readings or batches, so the validation paths are explored, not only the parser.
reading_like = st.fixed_dictionaries(
    {},
    optional={
        "device_id": st.one_of(text, st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), json_values),
        "ts": st.one_of(
            st.integers(0, 4 * 10**12), st.just("2024-01-01T00:00:00Z"), json_scalars, json_values
        ),
        "values": st.one_of(
            st.dictionaries(text, st.floats(-1e6, 1e6), min_size=1, max_size=4),
            st.dictionaries(text, json_scalars, max_size=4),
            json_values,
        ),
    },
)
batch_like = st.fixed_dictionaries(
    {"device_id": st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), "readings": st.lists(reading_like, max_size=5)}
)


def assert_accounted_for(decoded: Decoded) -> None:
    assert isinstance(decoded, Decoded)
    assert decoded.readings or decoded.rejections, "a message vanished without readings or a reason"
    for r in decoded.rejections:
        assert isinstance(r.reason, str) and r.reason
        assert isinstance(r.original, bytes)
    for r in decoded.readings:
        assert all(math.isfinite(v) for v in r.values.values())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200))
def test_property_arbitrary_bytes(raw: bytes) -> None:
    assert_accounted_for(decode(raw))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values | reading_like | batch_like)
def test_property_arbitrary_json(value: object) -> None:
    raw = orjson.dumps(value)
    decoded = decode(raw)
    assert_accounted_for(decoded)
    if not isinstance(value, dict):
        assert decoded.readings == []
