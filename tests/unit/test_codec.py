"""The edge codec: three wire formats in, one validated event out, or a dead letter that says why."""

from __future__ import annotations

import contextlib
import io
import json
import math
from typing import Any, Callable, Iterator

import avro.io
import avro.schema
import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.events import (
    ACCESS_ACTIONS,
    ACCESS_OUTCOMES,
    CHANGE_KINDS,
    RESOURCE_TYPES,
    EVENT_TYPES,
    AccessEvent,
    DataChangeEvent,
    Event,
    PredictionEvent,
    event_type_name,
)
from detectors.findings import INCIDENT_KINDS, SEVERITIES, STATUSES, ContainmentCommand, Incident
from schemas import load_schema
from streams import codec as codec_module
from streams.codec import (
    EVENT_SCHEMAS,
    DeadLetter,
    DecodeError,
    EventDecoder,
    decode_command,
    decode_dead_letter,
    decode_incident,
    decoder_for,
    encode_command,
    encode_dead_letter,
    encode_event,
    encode_incident,
    event_from_record,
    event_to_record,
)

pytestmark = pytest.mark.unit

TS = 1_700_000_000_000

# ---------------------------------------------------------------- strategies

texts = st.text(max_size=20)
ids = st.text(min_size=1, max_size=40)
string_maps = st.dictionaries(texts, texts, max_size=4)
finite = st.floats(allow_nan=False, allow_infinity=False)
timestamps = st.integers(min_value=0, max_value=(1 << 53) - 1)
non_negative_longs = st.integers(min_value=0, max_value=(1 << 63) - 1)

predictions = st.builds(
    PredictionEvent,
    event_id=ids,
    ts=timestamps,
    model_id=texts,
    model_version=texts,
    principal=st.none() | texts,
    segment=string_maps,
    features=st.dictionaries(texts, finite, max_size=6),
    prediction=st.none() | texts,
    score=st.none() | finite,
    label=st.none() | texts,
)
accesses = st.builds(
    AccessEvent,
    event_id=ids,
    ts=timestamps,
    principal=texts,
    action=st.sampled_from(ACCESS_ACTIONS),
    resource_type=st.sampled_from(RESOURCE_TYPES),
    resource=texts,
    bytes=non_negative_longs,
    count=st.integers(min_value=0, max_value=(1 << 31) - 1),
    outcome=st.sampled_from(ACCESS_OUTCOMES),
    source_ip=st.none() | texts,
    attributes=string_maps,
)
data_changes = st.builds(
    DataChangeEvent,
    event_id=ids,
    ts=timestamps,
    dataset=texts,
    version=texts,
    source=texts,
    actor=texts,
    change=st.sampled_from(CHANGE_KINDS),
    rows=non_negative_longs,
    label_counts=st.dictionaries(texts, non_negative_longs, max_size=4),
    content_hash=texts,
    expected_hash=st.none() | texts,
    approved_by=st.none() | texts,
    consumers=st.lists(texts, max_size=4).map(tuple),
)
events = predictions | accesses | data_changes
incidents = st.builds(
    Incident,
    incident_id=ids,
    kind=st.sampled_from(INCIDENT_KINDS),
    severity=st.sampled_from(SEVERITIES),
    detected_at=timestamps,
    window_start=timestamps,
    window_end=timestamps,
    detector=texts,
    score=finite,
    threshold=finite,
    summary=texts,
    model_id=st.none() | texts,
    model_version=st.none() | texts,
    segment=st.none() | string_maps,
    principal=st.none() | texts,
    resource=st.none() | texts,
    dataset=st.none() | texts,
    evidence=string_maps,
    recommended_actions=st.lists(texts, max_size=3).map(tuple),
    status=st.sampled_from(STATUSES),
    case_id=st.none() | ids,
    updated_at=timestamps,
    playbook_id=texts,
    investigation_queries=st.lists(texts, max_size=3).map(tuple),
    affected_predictions=non_negative_longs,
    related_incidents=st.lists(ids, max_size=3).map(tuple),
    impact_tier=st.sampled_from(("", "low", "medium", "high", "critical")),
    owners=st.lists(texts, max_size=2).map(tuple),
    updates=non_negative_longs,
)
commands = st.builds(
    ContainmentCommand,
    command_id=ids,
    incident_id=ids,
    issued_at=timestamps,
    action=texts,
    target_type=texts,
    target=texts,
    mode=st.sampled_from(("enforce", "dry_run")),
    expires_at=timestamps,
    reason=texts,
    params=string_maps,
    reversible=st.booleans(),
    revert_of=st.none() | ids,
)


def _access(**changes: Any) -> AccessEvent:
    values: dict[str, Any] = {
        "event_id": "a1",
        "ts": TS,
        "principal": "alice",
        "action": "download",
        "resource_type": "model",
        "resource": "fraud-v3",
    }
    values.update(changes)
    return AccessEvent(**values)


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode("utf-8")


def _access_json(**changes: Any) -> bytes:
    record = event_to_record(_access())
    record.update(changes)
    return _json(record)


def _dead(decoder: EventDecoder, raw: bytes) -> DeadLetter:
    outcome = decoder.decode_or_dead_letter(raw, source_topic="in", partition=3, offset=42, received_at=TS)
    assert isinstance(outcome, DeadLetter), outcome
    assert outcome.raw == raw
    assert outcome.reason
    assert (outcome.source_topic, outcome.partition, outcome.offset, outcome.received_at) == ("in", 3, 42, TS)
    return outcome


def _decoder(event: Event, **limits: Any) -> EventDecoder:
    return decoder_for(event_type_name(event), **limits)


def _avro_schema(name: str) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(load_schema(name)))


# ---------------------------------------------------------------- round trips


@given(events)
def test_plain_avro_round_trip(event: Event) -> None:
    assert _decoder(event).decode(encode_event(event)) == event


@given(events, st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_confluent_round_trip(event: Event, schema_id: int) -> None:
    raw = encode_event(event, confluent_schema_id=schema_id)
    assert raw[0] == 0 and int.from_bytes(raw[1:5], "big") == schema_id
    assert _decoder(event).decode(raw) == event


@given(events, st.sampled_from(["", " ", "\n\t "]), st.booleans())
def test_json_round_trip(event: Event, indent: str, ascii_only: bool) -> None:
    raw = (indent + json.dumps(event_to_record(event), ensure_ascii=ascii_only)).encode("utf-8")
    assert _decoder(event).decode(raw) == event


@given(events)
def test_record_round_trip(event: Event) -> None:
    assert event_from_record(event_type_name(event), event_to_record(event)) == event


@given(events)
@settings(max_examples=50)
def test_apache_avro_writer_is_readable_by_our_decoder(event: Event) -> None:
    buffer = io.BytesIO()
    schema = _avro_schema(EVENT_SCHEMAS[event_type_name(event)])
    avro.io.DatumWriter(schema).write(event_to_record(event), avro.io.BinaryEncoder(buffer))
    assert _decoder(event).decode(buffer.getvalue()) == event


@given(events)
@settings(max_examples=50)
def test_our_encoding_is_readable_by_apache_avro(event: Event) -> None:
    schema = _avro_schema(EVENT_SCHEMAS[event_type_name(event)])
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(encode_event(event))))
    assert decoded == event_to_record(event)


@given(incidents)
def test_incident_round_trip(incident: Incident) -> None:
    assert decode_incident(encode_incident(incident)) == incident.to_record()


@given(incidents)
@settings(max_examples=30)
def test_incident_is_readable_by_apache_avro(incident: Incident) -> None:
    reader = avro.io.DatumReader(_avro_schema("incident"))
    assert reader.read(avro.io.BinaryDecoder(io.BytesIO(encode_incident(incident)))) == incident.to_record()


def test_incident_from_finding_round_trips() -> None:
    from detectors.findings import Finding

    finding = Finding("download_burst", "burst", TS, TS - 60_000, TS, 40.0, 10.0, 0.95, "40 downloads", principal="p")
    incident = Incident.from_finding(finding)
    assert decode_incident(encode_incident(incident)) == incident.to_record()
    assert decode_incident(encode_incident(incident))["severity"] == "critical"


@given(commands)
def test_command_round_trip(command: ContainmentCommand) -> None:
    assert decode_command(encode_command(command)) == command.to_record()


@given(texts, st.integers(0, (1 << 31) - 1), non_negative_longs, timestamps, texts, st.binary(max_size=64))
def test_dead_letter_round_trip(topic: str, partition: int, offset: int, received: int, reason: str, raw: bytes) -> None:
    dead_letter = DeadLetter(topic, partition, offset, received, reason, "malformed", raw, "access")
    assert decode_dead_letter(encode_dead_letter(dead_letter)) == dead_letter.to_record()


def test_outbound_decoders_reject_trailing_bytes() -> None:
    raw = encode_command(ContainmentCommand("c", "i", 1, "throttle", "principal", "p", "enforce", 2, "r"))
    with pytest.raises(DecodeError, match="1 trailing bytes"):
        decode_command(raw + b"\x00")
    with pytest.raises(DecodeError, match="not valid Avro incident"):
        decode_incident(raw[:3])


# ---------------------------------------------------------------- format detection


@pytest.mark.parametrize(("event_id", "prefix"), [("{" + "y" * 15, b" {"), ("{abcd", b"\n{")])
def test_avro_that_looks_like_indented_json_still_decodes(event_id: str, prefix: bytes) -> None:
    """Lengths 16 and 5 zigzag-encode to a space and a newline, so an id starting with ``{`` looks like JSON."""
    event = _access(event_id=event_id)
    raw = encode_event(event)
    assert raw[:2] == prefix
    assert decoder_for("access").decode(raw) == event


def test_plain_avro_with_empty_event_id_is_rejected_not_misread() -> None:
    raw = fastavro_encode("access_event", event_to_record(_access()) | {"event_id": ""})
    assert raw[0] == 0
    dead = _dead(decoder_for("access"), raw)
    assert (dead.error_kind, dead.reason) == ("validation", "field 'event_id' must not be empty")


def test_allowed_schema_ids() -> None:
    event = _access()
    decoder = decoder_for("access", allowed_schema_ids=frozenset({3, 4}))
    assert decoder.decode(encode_event(event, confluent_schema_id=4)) == event
    assert decoder.decode(encode_event(event)) == event  # plain Avro carries no id to check
    dead = _dead(decoder, encode_event(event, confluent_schema_id=9))
    assert (dead.error_kind, dead.reason) == ("schema", "unknown schema id 9")


@given(st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_any_schema_id_outside_the_allowed_set_is_dead_lettered(schema_id: int) -> None:
    decoder = decoder_for("access", allowed_schema_ids=frozenset({1}))
    raw = encode_event(_access(), confluent_schema_id=schema_id)
    outcome = decoder.decode_or_dead_letter(raw, source_topic="t", partition=0, offset=0, received_at=0)
    if schema_id == 1:
        assert outcome == _access()
    else:
        assert isinstance(outcome, DeadLetter) and outcome.reason == f"unknown schema id {schema_id}"


def test_trailing_garbage_after_avro_is_dead_lettered() -> None:
    dead = _dead(decoder_for("access"), encode_event(_access()) + b"\x02zz")
    assert dead.error_kind == "malformed"
    assert "3 trailing bytes" in dead.reason
    dead = _dead(decoder_for("access"), encode_event(_access(), confluent_schema_id=1) + b"!")
    assert "1 trailing bytes" in dead.reason


def test_bytearray_and_memoryview_input() -> None:
    raw = encode_event(_access())
    assert decoder_for("access").decode(bytearray(raw)) == _access()
    assert decoder_for("access").decode(memoryview(raw)) == _access()  # type: ignore[arg-type]


def fastavro_encode(schema_name: str, record: dict[str, Any], schema: dict[str, Any] | None = None) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema or load_schema(schema_name)), record)
    return buffer.getvalue()


# ---------------------------------------------------------------- JSON contract


def test_json_missing_defaulted_fields_get_schema_defaults() -> None:
    raw = b'{"event_id": "p1", "ts": 5, "model_id": "m", "model_version": "1"}'
    assert decoder_for("prediction").decode(raw) == PredictionEvent("p1", 5, "m", "1")
    raw = b'{"event_id":"d1","ts":5,"dataset":"ds","version":"v","source":"s","actor":"a","change":"append","rows":3}'
    assert decoder_for("data_change").decode(raw) == DataChangeEvent("d1", 5, "ds", "v", "s", "a", "append", 3)


def test_json_nulls_and_integer_doubles() -> None:
    raw = _json({"event_id": "p", "ts": 1, "model_id": "m", "model_version": "1", "principal": None,
                 "features": {"x": 3}, "score": 1, "label": None, "extra_field": [1, 2]})
    event = decoder_for("prediction").decode(raw)
    assert event == PredictionEvent("p", 1, "m", "1", features={"x": 3.0}, score=1.0)
    assert isinstance(event.features["x"], float) and isinstance(event.score, float)


@pytest.mark.parametrize(
    ("changes", "error_kind", "reason"),
    [
        ({"principal": None}, "schema", "field 'principal' must not be null"),
        ({"ts": 1.5}, "schema", "field 'ts' must be an integer, got float"),
        ({"ts": True}, "schema", "field 'ts' must be an integer, got bool"),
        ({"count": False}, "schema", "field 'count' must be an integer, got bool"),
        ({"ts": -1}, "validation", "field 'ts' must be in [0, 9007199254740992), got -1"),
        ({"ts": 1 << 53}, "validation", "field 'ts' must be in [0, 9007199254740992), got 9007199254740992"),
        ({"bytes": -5}, "validation", "field 'bytes' must be in [0, 9223372036854775808), got -5"),
        ({"count": -1}, "validation", "field 'count' must be in [0, 2147483648), got -1"),
        ({"count": 1 << 31}, "validation", "field 'count' must be in [0, 2147483648), got 2147483648"),
        ({"event_id": ""}, "validation", "field 'event_id' must not be empty"),
        ({"event_id": "e" * 257}, "validation", "field 'event_id' is longer than 256 characters"),
        ({"event_id": 7}, "schema", "field 'event_id' must be a string, got int"),
        ({"attributes": []}, "schema", "field 'attributes' must be a dict, got list"),
        ({"attributes": {"k": 1}}, "schema", "field 'attributes' must be a string, got int (key 'k')"),
        ({"outcome": "timeout"}, "validation", "field 'outcome' has unknown value 'timeout' (allowed: denied, error, success)"),
        ({"action": 3}, "schema", "field 'action' must be a string, got int"),
    ],
)
def test_json_validation_reasons(changes: dict[str, Any], error_kind: str, reason: str) -> None:
    dead = _dead(decoder_for("access"), _access_json(**changes))
    assert (dead.error_kind, dead.reason) == (error_kind, reason)


def test_json_missing_required_field() -> None:
    record = event_to_record(_access())
    del record["resource"]
    dead = _dead(decoder_for("access"), _json(record))
    assert (dead.error_kind, dead.reason) == ("schema", "missing required field 'resource'")


@pytest.mark.parametrize(
    ("event_type", "field", "symbol"),
    [("access", "action", "exfiltrate"), ("access", "resource_type", "gpu"), ("data_change", "change", "merge")],
)
def test_unknown_enum_symbols_in_json_become_other(event_type: str, field: str, symbol: str) -> None:
    base = _access() if event_type == "access" else DataChangeEvent("d", 1, "ds", "v", "s", "a", "append", 1)
    record = event_to_record(base) | {field: symbol}
    assert getattr(decoder_for(event_type).decode(_json(record)), field) == "other"


def test_unknown_outcome_in_json_is_dead_lettered() -> None:
    dead = _dead(decoder_for("access"), _access_json(outcome="partial"))
    assert dead.error_kind == "validation" and "'outcome'" in dead.reason and "'partial'" in dead.reason


def test_unknown_enum_symbol_from_a_newer_avro_writer() -> None:
    """Schema resolution maps a new symbol to ``other``, but only a reader that knows the writer schema can do it.

    Our schemaless decoder reads with our own schema as writer schema (no registry), so the
    newer writer's symbol index is out of range and the message is dead-lettered, not misread.
    """
    newer = load_schema("access_event")
    newer["fields"][3]["type"]["symbols"].append("fine_tune")
    raw = fastavro_encode("access_event", event_to_record(_access(action="other")) | {"action": "fine_tune"}, newer)
    resolved = fastavro.schemaless_reader(io.BytesIO(raw), fastavro.parse_schema(newer),
                                          fastavro.parse_schema(load_schema("access_event")))
    assert resolved["action"] == "other"
    dead = _dead(decoder_for("access"), raw)
    assert dead.error_kind == "malformed" and "not valid Avro" in dead.reason


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_json_numbers_are_rejected(literal: str) -> None:
    base = '{"event_id": "p", "ts": 1, "model_id": "m", "model_version": "1"'
    dead = _dead(decoder_for("prediction"), f'{base}, "score": {literal}}}'.encode())
    assert (dead.error_kind, dead.reason.split(", got")[0]) == ("validation", "field 'score' must be finite")
    dead = _dead(decoder_for("prediction"), f'{base}, "features": {{"x": {literal}}}}}'.encode())
    assert dead.reason.startswith("field 'features' must be finite") and dead.reason.endswith("(key 'x')")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_avro_doubles_are_rejected(value: float) -> None:
    event = PredictionEvent("p", 1, "m", "1", score=value)
    dead = _dead(decoder_for("prediction"), encode_event(event))
    assert dead.error_kind == "validation" and dead.reason.startswith("field 'score' must be finite")
    dead = _dead(decoder_for("prediction"), encode_event(PredictionEvent("p", 1, "m", "1", features={"f": value})))
    assert dead.reason.startswith("field 'features' must be finite")


def test_negative_numbers_in_avro_are_rejected() -> None:
    event = DataChangeEvent("d", 1, "ds", "v", "s", "a", "relabel", 5, label_counts={"fraud": -3})
    dead = _dead(decoder_for("data_change"), encode_event(event))
    assert dead.reason == "field 'label_counts' must be in [0, 9223372036854775808), got -3 (key 'fraud')"
    dead = _dead(decoder_for("access"), encode_event(_access(ts=-1)))
    assert dead.reason.startswith("field 'ts' must be in [0,")


# ---------------------------------------------------------------- limits


def test_message_size_is_checked_before_parsing() -> None:
    raw = b"{" + b" " * (2 << 20)  # would be a JSON error if it were parsed
    dead = _dead(decoder_for("access"), raw)
    assert (dead.error_kind, dead.reason) == ("too_large", f"message is {len(raw)} bytes, limit {1 << 20}")


def test_two_megabyte_field_is_too_large() -> None:
    decoder = decoder_for("access", max_message_bytes=4 << 20)
    dead = _dead(decoder, encode_event(_access(resource="r" * (2 << 20))))
    assert (dead.error_kind, dead.reason) == ("too_large", "field 'resource' is longer than 65536 bytes")
    dead = _dead(decoder, _access_json(attributes={"k" * (2 << 20): "v"}))
    assert dead.error_kind == "too_large" and dead.reason.startswith("field 'attributes' is longer than 65536 bytes")


def test_field_limit_counts_utf8_bytes_not_characters() -> None:
    decoder = decoder_for("access", max_field_bytes=8)
    assert decoder.decode(encode_event(_access(resource="abcdefgh"))).resource == "abcdefgh"
    dead = _dead(decoder, encode_event(_access(resource="ééééé")))  # 5 characters, 10 bytes
    assert dead.reason == "field 'resource' is longer than 8 bytes"


def test_map_and_array_entry_limits() -> None:
    decoder = decoder_for("data_change", max_map_entries=3)
    event = DataChangeEvent("d", 1, "ds", "v", "s", "a", "append", 1, consumers=("a", "b", "c"))
    assert decoder.decode(encode_event(event)) == event
    dead = _dead(decoder, encode_event(DataChangeEvent("d", 1, "ds", "v", "s", "a", "append", 1,
                                                       label_counts={str(n): n for n in range(4)})))
    assert (dead.error_kind, dead.reason) == ("too_large", "field 'label_counts' has 4 entries, limit 3")
    dead = _dead(decoder, encode_event(DataChangeEvent("d", 1, "ds", "v", "s", "a", "append", 1, consumers=tuple("abcd"))))
    assert dead.reason == "field 'consumers' has 4 entries, limit 3"


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000, b'{"a": ' + b"[" * 100_000, b'{"a": ' + b'{"b": ' * 50_000, b"{" * 100_000],
    ids=["brackets", "json-brackets", "json-objects", "braces"],
)
def test_deeply_nested_input_is_dead_lettered(raw: bytes) -> None:
    assert _dead(decoder_for("prediction"), raw).error_kind == "malformed"


def test_invalid_utf8_is_dead_lettered() -> None:
    assert "not valid JSON" in _dead(decoder_for("access"), b'{"event_id": "\xff"}').reason
    raw = encode_event(_access(principal="ab")).replace(b"ab", b"\xff\xfe")
    assert "UnicodeDecodeError" in _dead(decoder_for("access"), raw).reason


def test_empty_message() -> None:
    assert _dead(decoder_for("access"), b"").reason == "empty message"


def test_unknown_event_type() -> None:
    with pytest.raises(ValueError, match="unknown event type 'metric'"):
        decoder_for("metric")
    with pytest.raises(ValueError, match="unknown event type"):
        event_from_record("metric", {})


def test_event_from_record_requires_a_mapping() -> None:
    with pytest.raises(DecodeError, match="must be an object, got list"):
        event_from_record("access", [1, 2])  # type: ignore[arg-type]


# ---------------------------------------------------------------- fuzz


def _check_outcome(decoder: EventDecoder, raw: bytes) -> None:
    """``decode`` raises nothing but DecodeError; ``decode_or_dead_letter`` never raises."""
    try:
        decoder.decode(raw)
    except DecodeError as exc:
        assert str(exc) and exc.error_kind in {"malformed", "schema", "too_large", "validation"}
    outcome = decoder.decode_or_dead_letter(raw, source_topic="t", partition=0, offset=1, received_at=2)
    if isinstance(outcome, DeadLetter):
        assert outcome.reason and outcome.raw == raw and outcome.event_type == decoder.event_type
    else:
        assert event_type_name(outcome) == decoder.event_type


event_types = st.sampled_from(sorted(EVENT_SCHEMAS))


@given(event_types, st.binary(max_size=300))
@settings(max_examples=500)
def test_random_bytes_never_escape(event_type: str, raw: bytes) -> None:
    _check_outcome(decoder_for(event_type), raw)


@given(event_types, st.binary(max_size=200))
@settings(max_examples=300)
def test_random_confluent_frames_never_escape(event_type: str, body: bytes) -> None:
    _check_outcome(decoder_for(event_type, allowed_schema_ids=frozenset({0})), b"\x00\x00\x00\x00\x00" + body)


@given(event_types, st.text(max_size=200))
@settings(max_examples=300)
def test_random_json_like_text_never_escapes(event_type: str, text: str) -> None:
    _check_outcome(decoder_for(event_type), ("{" + text).encode("utf-8", "surrogatepass"))


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children,
                                                                                     max_size=3)),
       event_types)
def test_random_json_objects_never_escape(value: Any, event_type: str) -> None:
    _check_outcome(decoder_for(event_type), json.dumps({"event_id": "e", "ts": 1, "payload": value}).encode())


def _encodings(event: Event) -> list[bytes]:
    return [encode_event(event), encode_event(event, confluent_schema_id=5), _json(event_to_record(event))]


@given(events, st.data())
@settings(max_examples=300)
def test_truncated_encodings_are_dead_lettered(event: Event, data: st.DataObject) -> None:
    for raw in _encodings(event):
        cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        outcome = _decoder(event).decode_or_dead_letter(raw[:cut], source_topic="t", partition=0, offset=0,
                                                        received_at=0)
        assert isinstance(outcome, DeadLetter) and outcome.reason and outcome.raw == raw[:cut]


@given(events, st.data())
@settings(max_examples=300)
def test_bit_flips_never_escape(event: Event, data: st.DataObject) -> None:
    for raw in _encodings(event):
        position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        flipped = bytearray(raw)
        flipped[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        _check_outcome(_decoder(event, allowed_schema_ids=frozenset({5})), bytes(flipped))


@given(events, st.binary(min_size=1, max_size=20), st.data())
def test_inserted_bytes_never_escape(event: Event, junk: bytes, data: st.DataObject) -> None:
    for raw in _encodings(event):
        position = data.draw(st.integers(min_value=0, max_value=len(raw)))
        _check_outcome(_decoder(event), raw[:position] + junk + raw[position:])


@given(events, st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_wrong_schema_ids_are_dead_lettered(event: Event, schema_id: int) -> None:
    decoder = _decoder(event, allowed_schema_ids=frozenset({schema_id ^ 1}))
    dead = _dead(decoder, encode_event(event, confluent_schema_id=schema_id))
    assert dead.reason == f"unknown schema id {schema_id}"


def _corrupt(field: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda record: record | {field: value}


@pytest.mark.parametrize(
    "corrupt",
    [_corrupt("ts", -5), _corrupt("ts", "now"), _corrupt("event_id", None), _corrupt("event_id", ""),
     _corrupt("ts", 1 << 70), _corrupt("ts", 1e20)],
)
@given(event=events)
@settings(max_examples=20)
def test_corrupted_json_fields_are_dead_lettered(corrupt: Callable[[dict[str, Any]], dict[str, Any]],
                                                 event: Event) -> None:
    dead = _dead(_decoder(event), _json(corrupt(event_to_record(event))))
    assert dead.error_kind in {"schema", "validation"}


# ---- the fast accept path never disagrees with the precise validator ----------------------

_odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(1 << 70), max_value=1 << 70), st.floats(), texts,
    st.integers(min_value=16_380, max_value=16_400).map(lambda n: "é" * n),  # around the fast path's cut-off
    st.dictionaries(texts, st.one_of(st.floats(), st.integers(min_value=-5, max_value=5), texts, st.booleans()),
                    max_size=3),
    st.lists(texts, max_size=2),
)


def _outcome(build: Callable[[], Event]) -> object:
    try:
        return build()
    except DecodeError as exc:
        return ("error", str(exc), exc.error_kind)


@contextlib.contextmanager
def _fast_path(compiled: bool) -> Iterator[None]:
    """The compiled record checks (``_avrofast.read_record``), or the Python ones used without the extension."""
    saved = codec_module._avrofast
    if not compiled:
        codec_module._avrofast = None
    try:
        yield
    finally:
        codec_module._avrofast = saved


def _mutations(event_type: str) -> st.SearchStrategy[dict[str, Any]]:
    names = [spec.name for spec in codec_module._FIELDS[event_type]]
    return st.dictionaries(st.sampled_from(names + ["extra"]), _odd_values, max_size=len(names) + 1)


@pytest.mark.parametrize("compiled", [True, False])
@settings(max_examples=300)
@given(events, st.data())
def test_fast_path_agrees_with_the_precise_validator(compiled: bool, event: Event, data: st.DataObject) -> None:
    """Valid records, and the same records with random fields replaced, removed or added."""
    event_type = event_type_name(event)
    record = event_to_record(event)
    mutated = {**record, **data.draw(_mutations(event_type))}
    for name in data.draw(st.lists(st.sampled_from(sorted(record)), max_size=2)):
        mutated.pop(name, None)
    limits = codec_module._Limits(max_field_bytes=1 << 16, max_map_entries=data.draw(st.sampled_from([2, 1024])))
    for candidate in (record, mutated):
        with _fast_path(compiled):
            fast = _outcome(lambda: codec_module._build_event(event_type, candidate, limits))
        precise = _outcome(lambda: codec_module._build_event_precisely(event_type, candidate, limits))
        assert fast == precise


def test_schema_field_order_is_the_event_constructor_order() -> None:
    """The fast path builds events positionally from the schema's field order."""
    import dataclasses

    for event_type, event_class in EVENT_TYPES.items():
        fields = [field.name for field in dataclasses.fields(event_class)]
        assert fields == [spec.name for spec in codec_module._FIELDS[event_type]]


def _prediction_for_fast_path() -> PredictionEvent:
    return PredictionEvent("p1", TS, "fraud", "v3", "svc-1", {"region": "EU"}, {"amount": 3.5}, "fraud", 0.9, None)


def _data_change_for_fast_path() -> DataChangeEvent:
    return DataChangeEvent("d1", TS, "fraud-train", "v9", "etl", "bob", "append", 10, {"fraud": 3}, "h1", "h0",
                           "carol", ("fraud:v3",))


_HOSTILE_VALUES = [None, math.nan, math.inf, -math.inf, True, 1, 1.5, -1, 1 << 53, 1 << 63, -(1 << 63) - 1, "", "x",
                   "é" * 16_385, "x" * 70_000, {}, {"a": math.nan}, {"a": math.inf}, {"a": True}, {"a": 1},
                   {"a": -1}, {"a": 1.5}, {"a": "s"}, {"a": "é" * 16_385}, {1: 1.0}, {"a": None}, [], ["x"], "other",
                   "download", "not-a-symbol", {"é" * 32_769: 1.0}, {"é" * 32_769: "s"}, "é" * 32_769]
_FIELD_CASES = [(event, spec.name, index) for event in (_access(), _prediction_for_fast_path(), _data_change_for_fast_path())
                for spec in codec_module._FIELDS[event_type_name(event)] for index in range(len(_HOSTILE_VALUES) + 1)]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize(("event", "field_name", "value_index"), _FIELD_CASES)
def test_fast_path_agrees_on_every_field_with_every_hostile_value(event: Event, field_name: str,
                                                                   value_index: int, compiled: bool) -> None:
    """Each field of each event type set to each awkward value (or removed): same event or same error."""
    record = event_to_record(event)
    if value_index == len(_HOSTILE_VALUES):
        record.pop(field_name)
    else:
        record[field_name] = _HOSTILE_VALUES[value_index]
    limits = codec_module._Limits()
    event_type = event_type_name(event)
    with _fast_path(compiled):
        fast = _outcome(lambda: codec_module._build_event(event_type, record, limits))
    precise = _outcome(lambda: codec_module._build_event_precisely(event_type, record, limits))
    assert repr(fast) == repr(precise)  # repr: nan != nan, but a wrongly accepted nan shows in the text


def test_a_truncated_avro_message_gets_the_same_reason_every_time() -> None:
    """The reader's error names the buffer it read from; its memory address must not reach the dead letter,
    or two reads of one bad message (a worker and a replay, a retry) would give different reasons."""
    decoder = decoder_for("prediction")
    raw = encode_event(PredictionEvent("p", 1, "m", "1", features={"x": 3.0}, score=0.5))[:-3]
    reasons = {_dead(decoder, raw).reason for _ in range(3)} | {_dead(decoder_for("prediction"), raw).reason}
    assert len(reasons) == 1
    reason = reasons.pop()
    assert reason.startswith("not valid Avro prediction_event") and " at 0x" not in reason
