"""The compiled accept path (streams/_avrofast.c) against the precise path (fastavro + validator).

The contract: on any body, the compiled reader either declines (None) or returns exactly the
event the precise path builds; whenever the precise path refuses a body, the compiled reader
declines. Valid bodies must be accepted, or the fast path would be a slow no-op.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.events import AccessEvent, DataChangeEvent, Event, PredictionEvent, event_type_name
from streams import codec
from streams.codec import DecodeError, EventDecoder, decoder_for, encode_event
from tests.unit.test_codec import events

pytestmark = pytest.mark.unit

TS = 1_700_000_000_000


def test_the_install_built_the_compiled_reader() -> None:
    assert codec._avrofast is not None, "streams/_avrofast.c was not compiled: run `make install`"
    assert decoder_for("prediction")._compiled is not None


def _precise(decoder: EventDecoder, body: bytes) -> Event | DecodeError:
    try:
        return codec._build_event(decoder.event_type, codec._read(decoder._schema_name, body), decoder._limits)
    except DecodeError as exc:
        return exc


def _compiled(decoder: EventDecoder, body: bytes) -> Event | None:
    return codec._avrofast.read_event(decoder._compiled, body, 0)  # type: ignore[union-attr,no-any-return]


def _same_event(left: object, right: object) -> bool:
    """Equal, of the same class, and with field values of the same types (a tuple stays a tuple)."""
    if type(left) is not type(right) or left != right:
        return False
    return all(type(getattr(left, name)) is type(getattr(right, name)) for name in left.__slots__)  # type: ignore[attr-defined]


def _assert_agrees(decoder: EventDecoder, body: bytes) -> Event | None:
    precise, compiled = _precise(decoder, body), _compiled(decoder, body)
    if isinstance(precise, DecodeError):
        assert compiled is None, f"compiled reader accepted a body the validator refuses ({precise})"
    elif compiled is not None:
        assert _same_event(compiled, precise), (compiled, precise)
    return compiled


@given(events)
@settings(max_examples=400)
def test_every_valid_event_is_accepted_and_equal(event: Event) -> None:
    decoder = decoder_for(event_type_name(event))
    compiled = _compiled(decoder, encode_event(event))
    assert compiled is not None
    assert _same_event(compiled, event)
    assert _same_event(decoder.decode(encode_event(event, confluent_schema_id=3)), event)


@given(events, st.data())
@settings(max_examples=300)
def test_mutated_bodies_agree_with_the_precise_path(event: Event, data: st.DataObject) -> None:
    body = bytearray(encode_event(event))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        position = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        action = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        if action == "flip":
            body[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif action == "set":
            body[position] = data.draw(st.integers(min_value=0, max_value=255))
        elif action == "cut":
            del body[position:position + data.draw(st.integers(min_value=1, max_value=4))]
        else:
            body[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        if not body:
            return
    limits = data.draw(st.sampled_from([{}, {"max_field_bytes": 6, "max_map_entries": 2}]))
    _assert_agrees(decoder_for(event_type_name(event), **limits), bytes(body))


# ---- hand-built bodies: every field with values the validator refuses ----------------------

def _long(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63) if -(1 << 63) <= value < (1 << 63) else value << 1
    out = bytearray()
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if zigzag:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return _long(len(raw)) + raw


def _double(value: float) -> bytes:
    return struct.pack("<d", value)


def _string_map(entries: dict[str, str]) -> bytes:
    return (_long(len(entries)) + b"".join(_text(k) + _text(v) for k, v in entries.items()) if entries else b"") + b"\x00"


def _double_map(entries: dict[str, float]) -> bytes:
    return (_long(len(entries)) + b"".join(_text(k) + _double(v) for k, v in entries.items()) if entries else b"") + b"\x00"


PREDICTION = {
    "event_id": _text("p-1"), "ts": _long(TS), "model_id": _text("credit"), "model_version": _text("v1"),
    "principal": b"\x02" + _text("svc"), "segment": _string_map({"region": "EU"}),
    "features": _double_map({"amount": 3.5}), "prediction": b"\x02" + _text("yes"),
    "score": b"\x02" + _double(0.25), "label": b"\x00",
}
ACCESS = {
    "event_id": _text("a-1"), "ts": _long(TS), "principal": _text("alice"), "action": _long(0),
    "resource_type": _long(0), "resource": _text("fraud-v3"), "bytes": _long(10), "count": _long(1),
    "outcome": _long(0), "source_ip": b"\x00", "attributes": _string_map({}),
}
DATA_CHANGE = {
    "event_id": _text("d-1"), "ts": _long(TS), "dataset": _text("txns"), "version": _text("7"),
    "source": _text("etl"), "actor": _text("bob"), "change": _long(0), "rows": _long(5),
    "label_counts": _long(1) + _text("fraud") + _long(3) + b"\x00", "content_hash": _text("h"),
    "expected_hash": b"\x00", "approved_by": b"\x02" + _text("carol"),
    "consumers": _long(2) + _text("fraud") + _text("ranking") + b"\x00",
}
BODIES = {"prediction": PREDICTION, "access": ACCESS, "data_change": DATA_CHANGE}


def _body(event_type: str, **fields: bytes) -> bytes:
    return b"".join({**BODIES[event_type], **fields}.values())


@pytest.mark.parametrize("event_type", sorted(BODIES))
def test_the_hand_built_bodies_are_valid_and_accepted(event_type: str) -> None:
    decoder = decoder_for(event_type)
    compiled = _assert_agrees(decoder, _body(event_type))
    assert compiled is not None
    assert isinstance(compiled, {"prediction": PredictionEvent, "access": AccessEvent,
                                 "data_change": DataChangeEvent}[event_type])


def _blocks_with_negative_count(entries: list[bytes]) -> bytes:
    block = b"".join(entries)
    return _long(-len(entries)) + _long(len(block)) + block + b"\x00"


VALID_VARIANTS: list[tuple[str, dict[str, bytes]]] = [
    ("prediction", {"features": _blocks_with_negative_count([_text("a") + _double(1.0), _text("b") + _double(-2.0)])}),
    ("prediction", {"segment": _long(1) + _text("r") + _text("EU") + _long(1) + _text("d") + _text("ios") + b"\x00"}),
    ("prediction", {"segment": _long(2) + _text("r") + _text("EU") + _text("r") + _text("US") + b"\x00"}),  # last wins
    ("prediction", {"principal": b"\x00", "prediction": b"\x00", "score": b"\x00", "label": b"\x02" + _text("1")}),
    ("prediction", {"features": b"\x00", "segment": b"\x00"}),
    ("prediction", {"event_id": _text("é" * 256)}),
    ("prediction", {"ts": _long(0)}),
    ("prediction", {"ts": _long((1 << 53) - 1)}),
    ("prediction", {"ts": b"\x80" * 3 + b"\x00"}),  # a non-canonical zero
    ("access", {"action": _long(8), "resource_type": _long(4), "outcome": _long(2), "count": _long((1 << 31) - 1)}),
    ("access", {"bytes": _long((1 << 63) - 1)}),
    ("data_change", {"consumers": _blocks_with_negative_count([_text("x")]), "label_counts": b"\x00"}),
]


@pytest.mark.parametrize("event_type, fields", VALID_VARIANTS)
def test_valid_variants_are_accepted_and_equal(event_type: str, fields: dict[str, bytes]) -> None:
    assert _assert_agrees(decoder_for(event_type), _body(event_type, **fields)) is not None


REFUSED: list[tuple[str, dict[str, bytes]]] = [
    ("prediction", {"event_id": _text("")}),
    ("prediction", {"event_id": _text("x" * 257)}),
    ("prediction", {"event_id": _text(b"\xff\xfe")}),
    ("prediction", {"model_id": _text(b"\xed\xa0\x80")}),  # a UTF-8-encoded surrogate
    ("prediction", {"model_id": _long(-1)}),
    ("prediction", {"model_id": _long(1 << 20) + b"x"}),
    ("prediction", {"ts": _long(-1)}),
    ("prediction", {"ts": _long(1 << 53)}),
    ("prediction", {"ts": b"\xff" * 10 + b"\x01"}),  # a varint longer than 64 bits
    ("prediction", {"principal": b"\x04" + _text("svc")}),  # union branch 2
    ("prediction", {"principal": b"\x01"}),  # union branch -1
    ("prediction", {"score": b"\x02" + _double(float("nan"))}),
    ("prediction", {"score": b"\x02" + _double(float("inf"))}),
    ("prediction", {"features": _double_map({"a": float("-inf")})}),
    ("prediction", {"features": _double_map({"a": 1.0, "b": float("nan")})}),
    ("prediction", {"features": _long(1) + _text("a") + b"\x00\x00"}),  # a double cut short
    ("prediction", {"segment": _long(1) + _text(b"\xc3") + _text("EU") + b"\x00"}),
    ("prediction", {"segment": _long(1) + _text("r") + _text(b"\xc3") + b"\x00"}),
    ("prediction", {"segment": _long(2) + _text("r") + _text("EU") + b"\x00"}),  # fewer entries than counted
    ("prediction", {"segment": _long(-(1 << 63)) + b"\x00"}),
    ("prediction", {"label": b"\x02" + _text("1") + b"\x00"}),  # a trailing byte
    ("access", {"action": _long(9)}),
    ("access", {"resource_type": _long(5)}),
    ("access", {"outcome": _long(3)}),
    ("access", {"count": _long(1 << 31)}),
    ("access", {"count": _long(-1)}),
    ("access", {"bytes": _long(-1)}),
    ("access", {"attributes": _string_map({"k": "v" * 70_000})}),
    ("data_change", {"rows": _long(-5)}),
    ("data_change", {"label_counts": _long(1) + _text("fraud") + _long(-3) + b"\x00"}),
    ("data_change", {"change": _long(6)}),
    ("data_change", {"consumers": _long(1) + _text(b"\x80") + b"\x00"}),
    ("data_change", {"consumers": _long(1025) + _text("x") * 1025 + b"\x00"}),
    ("data_change", {"label_counts": _long(1025) + b"".join(_text(f"k{i}") + _long(1) for i in range(1025)) + b"\x00"}),
]


@pytest.mark.parametrize("event_type, fields", [
    ("access", {"resource_type": _long(-1)}),  # fastavro reads a negative enum index from the end: 'other'
    ("prediction", {"features": _long(3) + (_text("a") + _double(1.0)) * 3 + b"\x00"}),  # 3 entries on the wire, 1 key
])
def test_bodies_only_the_precise_path_accepts_are_declined(event_type: str, fields: dict[str, bytes]) -> None:
    decoder = decoder_for(event_type, max_map_entries=2)
    body = _body(event_type, **fields)
    assert not isinstance(_precise(decoder, body), DecodeError)
    assert _compiled(decoder, body) is None
    assert _same_event(decoder.decode(body), _precise(decoder, body))


@pytest.mark.parametrize("event_type, fields", REFUSED)
def test_refused_bodies_are_declined(event_type: str, fields: dict[str, bytes]) -> None:
    decoder = decoder_for(event_type)
    body = _body(event_type, **fields)
    assert isinstance(_precise(decoder, body), DecodeError)
    assert _compiled(decoder, body) is None
    with pytest.raises(DecodeError):
        decoder.decode(body)


def test_truncated_bodies_are_declined_at_every_length() -> None:
    for event_type in BODIES:
        decoder, body = decoder_for(event_type), _body(event_type)
        for cut in range(len(body)):
            assert _compiled(decoder, body[:cut]) is None


@pytest.mark.parametrize("limits, fields, accepted", [
    ({"max_field_bytes": 8}, {"model_id": _text("12345678")}, True),
    ({"max_field_bytes": 8}, {"model_id": _text("123456789")}, False),
    ({"max_field_bytes": 8}, {"model_id": _text("é" * 4)}, True),  # 8 UTF-8 bytes
    ({"max_field_bytes": 8}, {"model_id": _text("é" * 4 + "x")}, False),
    ({"max_field_bytes": 8}, {"features": _double_map({"k" * 9: 1.0})}, False),
    ({"max_map_entries": 2}, {"features": _double_map({"a": 1.0, "b": 2.0})}, True),
    ({"max_map_entries": 2}, {"features": _double_map({"a": 1.0, "b": 2.0, "c": 3.0})}, False),
    ({"max_map_entries": 2}, {"features": _long(2) + _text("a") + _double(1.0) + _text("b") + _double(1.0)
                              + _long(1) + _text("c") + _double(1.0) + b"\x00"}, False),
])
def test_limits_follow_the_decoder(limits: dict[str, int], fields: dict[str, bytes], accepted: bool) -> None:
    decoder = decoder_for("prediction", **limits)
    body = _body("prediction", **fields)
    assert (_assert_agrees(decoder, body) is not None) is accepted
    assert isinstance(_precise(decoder, body), DecodeError) is not accepted


@pytest.mark.parametrize("prefix, allowed, accepted", [
    (b"", None, True),
    (b"\x00\x00\x00\x00\x07", None, True),
    (b"\x00\x00\x00\x00\x07", frozenset({7}), True),
    (b"\x00\x00\x00\x00\x07", frozenset({8}), False),
    (b"\x00\x00\x00\x00", None, False),
])
def test_read_plain_takes_what_parse_reads_as_avro(prefix: bytes, allowed: frozenset[int] | None,
                                                   accepted: bool) -> None:
    decoder = decoder_for("prediction", allowed_schema_ids=allowed)
    event = decoder.read_plain(prefix + _body("prediction"))
    assert (event is not None) is accepted
    if event is not None:
        assert _same_event(event, decoder.decode(prefix + _body("prediction")))


@pytest.mark.parametrize("raw", [
    b" " + _body("prediction"),  # whitespace first: parse tries JSON first
    b"{" + _body("prediction")[1:],
    bytearray(_body("prediction")),  # not bytes: decode copies it first
    b"",
])
def test_read_plain_declines_what_parse_reads_otherwise(raw: bytes) -> None:
    assert decoder_for("prediction").read_plain(raw) is None


def test_read_plain_declines_messages_over_the_size_limit() -> None:
    body = _body("prediction")
    assert decoder_for("prediction", max_message_bytes=len(body)).read_plain(body) is not None
    assert decoder_for("prediction", max_message_bytes=len(body) - 1).read_plain(body) is None


def test_json_messages_are_parsed_as_json() -> None:
    assert decoder_for("access").decode(b' {"event_id": "e", "ts": 5, "principal": "p", "action": "read",'
                                        b' "resource_type": "model", "resource": "m"}').event_id == "e"


def test_decoded_events_are_left_out_of_cycle_collection() -> None:
    """Frozen, and holding only strings, numbers and containers of them: they cannot be in a cycle."""
    import gc

    for event_type, body in [(kind, _body(kind)) for kind in BODIES]:
        event = decoder_for(event_type).read_plain(body)
        assert event is not None and not gc.is_tracked(event)
        assert not any(gc.is_tracked(getattr(event, name)) for name in event.__slots__
                       if isinstance(getattr(event, name), dict))


def test_repeated_strings_are_shared_and_event_ids_are_not() -> None:
    decoder = decoder_for("prediction")
    first, second = decoder.read_plain(_body("prediction")), decoder.read_plain(_body("prediction"))
    assert first is not None and second is not None
    assert first.model_id is second.model_id and first.principal is second.principal
    assert list(first.segment)[0] is list(second.segment)[0] and first.segment["region"] is second.segment["region"]
    assert list(first.features)[0] is list(second.features)[0]
    assert first.event_id == second.event_id and first.event_id is not second.event_id


def test_many_distinct_strings_still_decode_exactly() -> None:
    """More distinct values than the shared table holds (it is emptied when full)."""
    decoder = decoder_for("prediction")
    for index in range(70_000):
        model_id = f"model-{index}"
        event = decoder.read_plain(_body("prediction", model_id=_text(model_id), segment=_string_map({"k": model_id})))
        assert event is not None and event.model_id == model_id and event.segment == {"k": model_id}
    long_text = "x" * 65  # longer than shared strings: each its own object
    first = decoder.read_plain(_body("prediction", model_id=_text(long_text)))
    second = decoder.read_plain(_body("prediction", model_id=_text(long_text)))
    assert first is not None and second is not None and first.model_id == second.model_id == long_text


def test_strings_read_again_come_from_the_cache_only_when_their_bytes_match() -> None:
    """read_string's cache of recent ASCII strings: near misses and non-ASCII text decode as themselves."""
    decoder = decoder_for("prediction")
    for model_id in ["fraud", "fraue", "frau", "fraud ", "fräud", "fräud", "", "fraud", "ｆraud", "fräud"]:
        event = decoder.read_plain(_body("prediction", model_id=_text(model_id), segment=_string_map({model_id: "v"})))
        assert event is not None and event.model_id == model_id and list(event.segment) == [model_id]
    first = decoder.read_plain(_body("prediction", model_id=_text("fräud")))
    second = decoder.read_plain(_body("prediction", model_id=_text("fräud")))
    assert first is not None and second is not None and first.model_id is second.model_id  # shared all the same


def test_a_class_without_slots_is_built_attribute_by_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events go straight into their slots; a class whose fields are not slots takes the generic way,
    and both give the event the precise path gives."""
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class PlainPrediction:  # the same fields, in a __dict__
        event_id: str
        ts: int
        model_id: str
        model_version: str
        principal: Any = None
        segment: Any = None
        features: Any = None
        prediction: Any = None
        score: Any = None
        label: Any = None

    body = _body("prediction")
    expected = _precise(decoder_for("prediction"), body)
    slotted = codec._avro_program("prediction", codec._DEFAULT_LIMITS, 1 << 20, None)
    monkeypatch.setitem(codec.EVENT_TYPES, "prediction", PlainPrediction)
    plain = codec._avro_program("prediction", codec._DEFAULT_LIMITS, 1 << 20, None)
    from_slots = codec._avrofast.read_event(slotted, body, 0)  # type: ignore[union-attr]
    from_dict = codec._avrofast.read_event(plain, body, 0)  # type: ignore[union-attr]
    assert type(from_slots) is PredictionEvent and _same_event(from_slots, expected)
    assert type(from_dict) is PlainPrediction and dataclasses.asdict(from_dict) == dataclasses.asdict(expected)


def test_a_field_named_twice_is_built_without_leaking() -> None:
    """Two fields with one name write one slot twice: the generic path releases the first value."""
    import sys

    class Pair:
        __slots__ = ("a",)

    string_field = (0, -1, -1, 0, 0, -1, (), -1)
    program = codec._avrofast.compile(Pair, ("a", "a"), (string_field, string_field), 1 << 16, 16, 1 << 20, None)  # type: ignore[union-attr]
    value = "".join(["unique-", "v" * 70])  # its own object, too long for the shared-strings table
    record = {"a": value}
    before = sys.getrefcount(value)
    for _ in range(1_000):
        event = codec._avrofast.read_record(program, record)  # type: ignore[union-attr]
        assert event.a == value
        del event
    assert sys.getrefcount(value) == before


class _Record:
    """What read_messages reads of an aiokafka ConsumerRecord: its value."""

    def __init__(self, value: object) -> None:
        self.value = value


def test_read_messages_is_read_plain_over_a_list() -> None:
    decoder = decoder_for("prediction", max_message_bytes=4_096)
    good = _body("prediction")
    values: list[object] = [good, b"\x00\x00\x00\x00\x07" + good, None, b"", b" " + good, bytearray(good), good[:-3],
                            b"{}", good + b"\x00" * 5_000, good]
    events, declined = decoder.run_reader([_Record(value) for value in values])  # type: ignore[misc]
    one_by_one = [decoder.read_plain(value) if isinstance(value, bytes) else None for value in values]
    assert declined == [index for index, event in enumerate(one_by_one) if event is None]
    assert len(events) == len(values) - len(declined)
    assert all(_same_event(event, expected) for event, expected in zip(events, [e for e in one_by_one if e]))
    assert decoder.run_reader([]) == ([], [])  # type: ignore[misc]
    with pytest.raises(AttributeError):
        decoder.run_reader([object()])  # type: ignore[misc]
    # a FetchedRun's values (bytes or None) are read as the values themselves, with the same answers;
    # anything else in the list is still a record whose value is read
    raw_values = [value if isinstance(value, bytes) or value is None else _Record(value) for value in values]
    assert decoder.run_reader(raw_values)[1] == declined  # type: ignore[misc]
    raw_events = decoder.run_reader(raw_values)[0]  # type: ignore[misc]
    assert len(raw_events) == len(events) and all(map(_same_event, raw_events, events))
