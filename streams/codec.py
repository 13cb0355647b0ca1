"""Bytes to events and back: the only place that knows wire formats.

Every input message is one of three formats, told apart per message so publishers can
migrate one at a time:

1. plain (schemaless) Avro binary of the topic's schema;
2. Confluent framing: ``0x00`` + 4-byte big-endian schema id + the same Avro body;
3. a UTF-8 JSON object with the schema's field names (``null`` for nullable fields,
   schema defaults for missing defaulted fields).

Whatever the format, the decoded record goes through one validator driven by the Avro
schema, so JSON and Avro publishers obey exactly the same contract. Failures are data:
``decode_or_dead_letter`` returns a ``DeadLetter`` holding the raw bytes and the reason.

Plain and Confluent-framed Avro bodies first meet a compiled reader (``streams/_avrofast.c``,
built at install) that only accepts: when every field is present and plainly valid it builds
the event straight from the bytes (about 1 µs instead of 9); anything else, including every
body the validator refuses, goes the precise way (fastavro, then the validator), so the
outcome is always the precise path's. ``tests/unit/test_avrofast.py`` holds the two together.

Schema resolution across schema versions is not done here: Avro bodies are read with our
own schema as the writer schema (no registry lookup), so an unknown enum symbol can only
arrive through JSON, where it maps to the enum's ``default`` (``other``).

>>> from detectors.events import AccessEvent
>>> event = AccessEvent("e1", 1_700_000_000_000, "alice", "download", "model", "fraud-v3")
>>> decoder = decoder_for("access")
>>> decoder.decode(encode_event(event, confluent_schema_id=7)) == event
True
>>> decoder.decode(b'{"event_id": "e2", "ts": 5, "principal": "bob", "action": "exfiltrate",'
...                b' "resource_type": "model", "resource": "m"}').action
'other'
>>> decoder.decode_or_dead_letter(b'{"ts": 5}', source_topic="access", partition=0, offset=9,
...                               received_at=10).reason
"missing required field 'event_id'"
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, TypeVar

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from detectors.events import EVENT_TYPES, DataChangeEvent, Event, event_type_name
from detectors.findings import ContainmentCommand, Incident
from schemas import load_schema

try:  # the compiled accept path for Avro bodies (streams/_avrofast.c), built by `pip install`
    from streams import _avrofast
except ImportError:  # running from a source tree that was never installed: the Python paths alone
    _avrofast = None

EVENT_SCHEMAS: Mapping[str, str] = {
    "prediction": "prediction_event",
    "access": "access_event",
    "data_change": "data_change_event",
}
MAX_EVENT_ID_CHARS = 256
_TS_BOUNDS = (0, 1 << 53)  # JSON numbers above 2**53 lose precision; nothing real lives there
_LONG_BOUNDS = (-(1 << 63), 1 << 63)
_INT_BOUNDS = (-(1 << 31), 1 << 31)
#: Fields (or map values) that count things, so a negative number is a publisher bug.
_NON_NEGATIVE = frozenset({"bytes", "count", "rows", "label_counts"})
_CONFLUENT_HEADER = 5
_WHITESPACE = b" \t\r\n"
_REASON_CHARS = 300
#: How a Python object prints itself in an exception (``<_io.BytesIO object at 0x7f...>``).
_OBJECT_AT = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>")
_Container = TypeVar("_Container", dict[str, Any], list[Any])

_PARSED: dict[str, Any] = {
    name: parse_schema(load_schema(name))
    for name in (*EVENT_SCHEMAS.values(), "incident", "containment_command", "dead_letter")
}


class DecodeError(Exception):
    """A message that cannot become an event; ``error_kind`` is one of
    ``malformed``, ``schema``, ``too_large``, ``validation``."""

    def __init__(self, reason: str, error_kind: str = "malformed") -> None:
        super().__init__(reason)
        self.error_kind = error_kind

    @property
    def reason(self) -> str:
        """The human-readable cause (what ``str()`` gives)."""
        return str(self)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input message we refused, with everything needed to inspect or replay it."""

    source_topic: str
    partition: int
    offset: int
    received_at: int
    reason: str
    error_kind: str
    raw: bytes
    event_type: str | None

    def to_record(self) -> dict[str, Any]:
        """A plain dict with exactly the fields of ``schemas/dead_letter.avsc``."""
        return {
            "source_topic": self.source_topic,
            "partition": self.partition,
            "offset": self.offset,
            "received_at": self.received_at,
            "reason": self.reason,
            "error_kind": self.error_kind,
            "raw": self.raw,
            "event_type": self.event_type,
        }


@dataclass(frozen=True, slots=True)
class _Limits:
    max_field_bytes: int = 1 << 16
    max_map_entries: int = 1024


_DEFAULT_LIMITS = _Limits()


@dataclass(frozen=True, slots=True)
class _Field:
    """One schema field, compiled once so validation does no schema walking per message."""

    name: str
    kind: str  # string | long | int | double | boolean | enum | map | array
    item_kind: str | None  # value type of a map, item type of an array
    nullable: bool
    has_default: bool
    default: Any
    symbols: frozenset[str]
    enum_default: str | None
    bounds: tuple[int, int]


def _short(value: object) -> str:
    """``repr`` cut to a readable size: reasons must not carry a 64 KiB field back out."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _compile_field(field: Mapping[str, Any]) -> _Field:
    avro_type = field["type"]
    nullable = isinstance(avro_type, list)
    if nullable:
        avro_type = next(branch for branch in avro_type if branch != "null")
    kind = avro_type if isinstance(avro_type, str) else avro_type["type"]
    item_kind = None
    if kind == "map":
        item_kind = avro_type["values"]
    elif kind == "array":
        item_kind = avro_type["items"]
    is_enum = kind == "enum"
    numeric = item_kind if kind == "map" else kind
    bounds = _TS_BOUNDS if field["name"] == "ts" else _INT_BOUNDS if numeric == "int" else _LONG_BOUNDS
    if field["name"] in _NON_NEGATIVE:
        bounds = (0, bounds[1])
    return _Field(
        name=field["name"],
        kind=kind,
        item_kind=item_kind,
        nullable=nullable,
        has_default="default" in field,
        default=field.get("default"),
        symbols=frozenset(avro_type["symbols"]) if is_enum else frozenset(),
        enum_default=avro_type.get("default") if is_enum else None,
        bounds=bounds,
    )


_FIELDS: dict[str, tuple[_Field, ...]] = {
    event_type: tuple(_compile_field(field) for field in load_schema(schema_name)["fields"])
    for event_type, schema_name in EVENT_SCHEMAS.items()
}


_KIND_CODES = {"string": 0, "long": 1, "int": 1, "double": 2, "boolean": 3, "enum": 4, "map": 5, "array": 6}


def _avro_program(event_type: str, limits: _Limits, max_message_bytes: int,
                  allowed_schema_ids: frozenset[int] | None) -> Any:
    """The compiled reader of one decoder: its schema, limits and schema ids (see the top of ``_avrofast.c``)."""
    fields = []
    for spec, field in zip(_FIELDS[event_type], load_schema(EVENT_SCHEMAS[event_type])["fields"]):
        avro_type = field["type"]
        null_branch = value_branch = -1
        if isinstance(avro_type, list):
            null_branch = avro_type.index("null")
            value_branch = 1 - null_branch
            avro_type = avro_type[value_branch]
        symbols = tuple(avro_type["symbols"]) if spec.kind == "enum" else ()
        low, high = spec.bounds
        max_chars = MAX_EVENT_ID_CHARS if spec.name == "event_id" else -1
        fields.append((_KIND_CODES[spec.kind], null_branch, value_branch, low, high - 1,
                       _KIND_CODES.get(spec.item_kind or "", -1), symbols, max_chars))
    names = tuple(spec.name for spec in _FIELDS[event_type])
    return _avrofast.compile(EVENT_TYPES[event_type], names, tuple(fields), limits.max_field_bytes,
                             limits.max_map_entries, max_message_bytes, allowed_schema_ids)


def _check_string(spec: _Field, value: object, limits: _Limits) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"field {spec.name!r} must be a string, got {type(value).__name__}", "schema")
    # A str never takes more than 4 bytes per character in UTF-8: skip encoding short ones.
    if len(value) * 4 > limits.max_field_bytes and len(value.encode("utf-8", "surrogatepass")) > limits.max_field_bytes:
        raise DecodeError(f"field {spec.name!r} is longer than {limits.max_field_bytes} bytes", "too_large")
    return value


def _check_integer(spec: _Field, value: object, limits: _Limits) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"field {spec.name!r} must be an integer, got {type(value).__name__}", "schema")
    low, high = spec.bounds
    if not low <= value < high:
        raise DecodeError(f"field {spec.name!r} must be in [{low}, {high}), got {_short(value)}", "validation")
    return value


def _check_double(spec: _Field, value: object, limits: _Limits) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise DecodeError(f"field {spec.name!r} must be a number, got {type(value).__name__}", "schema")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise DecodeError(f"field {spec.name!r} must be finite, got {_short(value)}", "validation")
    return number


def _check_boolean(spec: _Field, value: object, limits: _Limits) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"field {spec.name!r} must be a boolean, got {type(value).__name__}", "schema")
    return value


def _check_enum(spec: _Field, value: object, limits: _Limits) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"field {spec.name!r} must be a string, got {type(value).__name__}", "schema")
    if value in spec.symbols:
        return value
    if spec.enum_default is not None:
        return spec.enum_default  # publishers may add symbols; readers file them under "other"
    allowed = ", ".join(sorted(spec.symbols))
    raise DecodeError(f"field {spec.name!r} has unknown value {_short(value)} (allowed: {allowed})", "validation")


_SCALARS: dict[str, Callable[[_Field, object, _Limits], Any]] = {
    "string": _check_string,
    "long": _check_integer,
    "int": _check_integer,
    "double": _check_double,
    "boolean": _check_boolean,
    "enum": _check_enum,
}


def _check_container(spec: _Field, value: object, container: type[_Container], limits: _Limits) -> _Container:
    if not isinstance(value, container):
        raise DecodeError(f"field {spec.name!r} must be a {container.__name__}, got {type(value).__name__}", "schema")
    if len(value) > limits.max_map_entries:
        raise DecodeError(f"field {spec.name!r} has {len(value)} entries, limit {limits.max_map_entries}", "too_large")
    return value


def _map_is_clean(spec: _Field, entries: dict[str, Any], limits: _Limits) -> bool:
    """One C-speed pass that accepts the common, valid map; anything odd takes the precise slow path."""
    if not entries:
        return True
    values = entries.values()
    longest = limits.max_field_bytes // 4  # a str never takes more than 4 UTF-8 bytes per character
    if set(map(type, entries)) != {str} or max(map(len, entries)) > longest:
        return False
    value_types = set(map(type, values))
    if spec.item_kind == "double":  # a finite sum means no NaN or inf among the terms
        return value_types == {float} and math.isfinite(sum(values))
    if spec.item_kind == "long":
        low, high = spec.bounds
        return value_types == {int} and low <= min(values) and max(values) < high
    return value_types == {str} and max(map(len, values)) <= longest


def _check_map(spec: _Field, value: object, limits: _Limits) -> dict[str, Any]:
    entries = _check_container(spec, value, dict, limits)
    if _map_is_clean(spec, entries, limits):
        return dict(entries)
    check_value = _SCALARS[spec.item_kind or "string"]
    checked: dict[str, Any] = {}
    for key, item in entries.items():
        try:
            checked[_check_string(spec, key, limits)] = check_value(spec, item, limits)
        except DecodeError as exc:
            raise DecodeError(f"{exc} (key {_short(key)})", exc.error_kind) from None
    return checked


def _check_array(spec: _Field, value: object, limits: _Limits) -> list[Any]:
    items = _check_container(spec, value, list, limits)
    check_item = _SCALARS[spec.item_kind or "string"]
    return [check_item(spec, item, limits) for item in items]


_CHECKERS: dict[str, Callable[[_Field, object, _Limits], Any]] = {**_SCALARS, "map": _check_map, "array": _check_array}


def _check_field(spec: _Field, record: Mapping[str, Any], limits: _Limits) -> Any:
    if spec.name not in record:
        if not spec.has_default:
            raise DecodeError(f"missing required field {spec.name!r}", "schema")
        default = spec.default
        return dict(default) if isinstance(default, dict) else list(default) if isinstance(default, list) else default
    value = record[spec.name]
    if value is None:
        if spec.nullable:
            return None
        raise DecodeError(f"field {spec.name!r} must not be null", "schema")
    return _CHECKERS[spec.kind](spec, value, limits)


def _check_event_id(event_id: str) -> None:
    if not event_id:
        raise DecodeError("field 'event_id' must not be empty", "validation")
    if len(event_id) > MAX_EVENT_ID_CHARS:
        raise DecodeError(f"field 'event_id' is longer than {MAX_EVENT_ID_CHARS} characters", "validation")


# ---- the fast accept path ----------------------------------------------------------------
# Almost every record is a dict whose fields are all present and plainly valid. One closure
# per field accepts exactly those values, returning them unchanged; anything else (a missing
# field, a default to fill, an int where a double goes, an unknown enum symbol, an array, a
# long string, a bad value) makes the whole record take the precise path below, which also
# words the error. About 2.7 µs instead of 6.3 µs for a prediction. With the extension built,
# ``_avrofast.read_record`` applies these same checks (about 0.5 µs); this is the fallback.

_REJECT = object()
_FieldReader = Callable[[Mapping[str, Any]], Any]


def _fast_reader(spec: _Field, limits: _Limits) -> _FieldReader:
    """One field's reader: the value when plainly valid (returned as the precise checker would), else ``_REJECT``."""
    name, nullable, longest = spec.name, spec.nullable, limits.max_field_bytes // 4
    low, high = spec.bounds
    if spec.kind == "string":
        def read_string(record: Mapping[str, Any]) -> Any:
            value = record.get(name, _REJECT)
            if type(value) is str:
                return value if len(value) <= longest else _REJECT
            return None if value is None and nullable else _REJECT
        return read_string
    if spec.kind in ("long", "int"):
        def read_integer(record: Mapping[str, Any]) -> Any:
            value = record.get(name, _REJECT)
            if type(value) is int:
                return value if low <= value < high else _REJECT
            return None if value is None and nullable else _REJECT
        return read_integer
    if spec.kind == "double":
        def read_double(record: Mapping[str, Any]) -> Any:
            value = record.get(name, _REJECT)
            if type(value) is float:
                return value if value - value == 0.0 else _REJECT  # nan - nan and inf - inf are nan
            return None if value is None and nullable else _REJECT
        return read_double
    if spec.kind == "enum":
        symbols = spec.symbols

        def read_enum(record: Mapping[str, Any]) -> Any:
            value = record.get(name, _REJECT)
            if type(value) is str and value in symbols:
                return value
            return None if value is None and nullable else _REJECT
        return read_enum
    if spec.kind == "map":
        max_entries, item_type = limits.max_map_entries, {"double": float, "long": int, "int": int}.get(
            spec.item_kind or "", str)

        def read_map(record: Mapping[str, Any]) -> Any:
            value = record.get(name, _REJECT)
            if type(value) is not dict or len(value) > max_entries:
                return _REJECT
            for key, item in value.items():  # small maps: a plain loop beats building type sets
                if type(key) is not str or len(key) > longest or type(item) is not item_type:
                    return _REJECT
                if item_type is str and len(item) > longest:
                    return _REJECT
            items = value.values()
            if item_type is float:
                return dict(value) if math.isfinite(sum(items)) else _REJECT  # a finite sum: no nan or inf
            if item_type is int:
                return dict(value) if not value or (low <= min(items) and max(items) < high) else _REJECT
            return dict(value)
        return read_map
    return lambda record: _REJECT  # booleans and arrays (data-change consumers) are rare: the precise path


_FAST_READERS: dict[tuple[str, _Limits], tuple[_FieldReader, ...]] = {}


def _read_fast(event_type: str, record: Mapping[str, Any], limits: _Limits) -> list[Any] | None:
    """The field values in schema order when every one is plainly valid, else ``None``."""
    readers = _FAST_READERS.get((event_type, limits))
    if readers is None:
        readers = _FAST_READERS[(event_type, limits)] = tuple(_fast_reader(spec, limits) for spec in _FIELDS[event_type])
    values = [read(record) for read in readers]
    return None if _REJECT in values else values


#: Compiled record checks by (event type, max_field_bytes, max_map_entries): plain ints hash faster than _Limits.
_RECORD_PROGRAMS: dict[tuple[str, int, int], Any] = {}


def _record_program(event_type: str, limits: _Limits) -> Any:
    key = (event_type, limits.max_field_bytes, limits.max_map_entries)
    program = _RECORD_PROGRAMS.get(key)
    if program is None:
        program = _RECORD_PROGRAMS[key] = _avro_program(event_type, limits, 0, None)
    return program


def _build_event(event_type: str, record: object, limits: _Limits) -> Event:
    if _avrofast is not None:  # the same checks as _read_fast, compiled
        event = _avrofast.read_record(_record_program(event_type, limits), record)
        if event is not None:
            return event  # type: ignore[no-any-return]
    elif type(record) is dict and (values := _read_fast(event_type, record, limits)) is not None:
        _check_event_id(values[0])
        return EVENT_TYPES[event_type](*values)  # type: ignore[no-any-return]
    return _build_event_precisely(event_type, record, limits)


def _build_event_precisely(event_type: str, record: object, limits: _Limits) -> Event:
    if not isinstance(record, Mapping):
        raise DecodeError(f"a {event_type} event must be an object, got {type(record).__name__}", "schema")
    values = {spec.name: _check_field(spec, record, limits) for spec in _FIELDS[event_type]}
    _check_event_id(values["event_id"])
    if event_type == "data_change":
        values["consumers"] = tuple(values["consumers"])
    event: Event = EVENT_TYPES[event_type](**values)
    return event


def _event_type_known(event_type: str) -> None:
    if event_type not in EVENT_SCHEMAS:
        raise ValueError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_SCHEMAS)}")


def event_from_record(
    event_type: str,
    record: Mapping[str, Any],
    *,
    max_field_bytes: int = 1 << 16,
    max_map_entries: int = 1024,
) -> Event:
    """Validate a decoded dict (from JSON, Avro or a replay file) and build the event.

    Unknown keys are ignored so publishers can add fields ahead of the schema; raises
    ``DecodeError`` with a readable reason otherwise.
    """
    if event_type not in EVENT_SCHEMAS:
        _event_type_known(event_type)
    limits = _DEFAULT_LIMITS
    if max_field_bytes != limits.max_field_bytes or max_map_entries != limits.max_map_entries:
        limits = _Limits(max_field_bytes, max_map_entries)
    return _build_event(event_type, record, limits)


def event_to_record(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready dict with the schema's field names (inverse of ``event_from_record``)."""
    fields = _FIELDS[event_type_name(event)]
    record = {spec.name: getattr(event, spec.name) for spec in fields}
    for spec in fields:
        if spec.kind == "map" and record[spec.name] is not None:
            record[spec.name] = dict(record[spec.name])
    if isinstance(event, DataChangeEvent):
        record["consumers"] = list(event.consumers)
    return record


def _write(schema_name: str, record: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, _PARSED[schema_name], record)
    return buffer.getvalue()


def _read(schema_name: str, body: bytes) -> dict[str, Any]:
    """Read one Avro record that must span ``body`` exactly (trailing bytes mean a framing bug)."""
    stream = io.BytesIO(body)
    try:
        record = schemaless_reader(stream, _PARSED[schema_name], None)
    except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, ... on garbage
        detail = _OBJECT_AT.sub("the message", str(exc))  # not the reader's memory address: reasons must repeat
        raise DecodeError(f"not valid Avro {schema_name}: {type(exc).__name__}: {detail}"[:_REASON_CHARS]) from None
    extra = len(body) - stream.tell()
    if extra:
        raise DecodeError(f"{extra} trailing bytes after the Avro {schema_name} record")
    if not isinstance(record, dict):
        raise DecodeError(f"Avro {schema_name} did not decode to a record")
    return record


def encode_event(event: Event, *, confluent_schema_id: int | None = None) -> bytes:
    """Avro binary of ``event``, optionally in Confluent framing (for publishers, tests, the simulator)."""
    body = _write(EVENT_SCHEMAS[event_type_name(event)], event_to_record(event))
    if confluent_schema_id is None:
        return body
    return b"\x00" + confluent_schema_id.to_bytes(4, "big") + body


def encode_incident(incident: Incident) -> bytes:
    """Schemaless Avro of ``incident`` (``schemas/incident.avsc``)."""
    return _write("incident", incident.to_record())


def encode_command(command: ContainmentCommand) -> bytes:
    """Schemaless Avro of ``command`` (``schemas/containment_command.avsc``)."""
    return _write("containment_command", command.to_record())


def encode_dead_letter(dead_letter: DeadLetter) -> bytes:
    """Schemaless Avro of ``dead_letter`` (``schemas/dead_letter.avsc``)."""
    return _write("dead_letter", dead_letter.to_record())


def decode_incident(raw: bytes) -> dict[str, Any]:
    """The record encoded by ``encode_incident``; raises ``DecodeError``."""
    return _read("incident", bytes(raw))


def decode_command(raw: bytes) -> dict[str, Any]:
    """The record encoded by ``encode_command``; raises ``DecodeError``."""
    return _read("containment_command", bytes(raw))


def decode_dead_letter(raw: bytes) -> dict[str, Any]:
    """The record encoded by ``encode_dead_letter``; raises ``DecodeError``."""
    return _read("dead_letter", bytes(raw))


def _looks_like_json(raw: bytes) -> bool:
    first = raw[0]
    if first == 0x7B:
        return True
    return first in _WHITESPACE and raw.lstrip(_WHITESPACE)[:1] == b"{"


#: A number of this many digits may be an integer beyond 64 bits, which orjson reads as a float and json as an int.
_LONG_DIGIT_RUN = 19
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))


def _has_long_digit_run(text: str) -> bool:
    if _avrofast is not None:
        return _avrofast.has_long_digit_run(text, _LONG_DIGIT_RUN)  # type: ignore[no-any-return]
    return b"0" * _LONG_DIGIT_RUN in text.encode("utf-8", "surrogatepass").translate(_DIGITS_AS_ZEROS)


def loads_json(text: str) -> Any:
    """``json.loads(text)``, about three times faster: orjson reads it when it can, json otherwise.

    orjson refuses what json alone accepts (``NaN``, ``Infinity``, lone surrogates, numbers
    beyond a double) and json then reads it, or raises its own error; an integer beyond 64 bits,
    which orjson would turn into a float, goes to json directly. So the result, or the
    error, is always json's (``tests/unit/test_json_fast.py`` checks it).
    """
    if not _has_long_digit_run(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def read_wrapped_line(text: str) -> Event | None:
    """The event of a replay line ``{"type": ..., "event": {...}}`` when the compiled reader accepts
    it (default limits), else ``None``: ``replay.parse_line`` then reads the line the precise way,
    which also words the error. One parse and one compiled call, for the common case."""
    if _avrofast is None or _avrofast.has_long_digit_run(text, _LONG_DIGIT_RUN):
        return None
    try:
        wrapper = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not _WRAPPED_PROGRAMS:
        _WRAPPED_PROGRAMS.update((event_type, _record_program(event_type, _DEFAULT_LIMITS)) for event_type in EVENT_TYPES)
    return _avrofast.read_wrapped(_WRAPPED_PROGRAMS, wrapper)  # type: ignore[no-any-return]


#: Event type -> its compiled record program at the default limits (``read_wrapped_line``).
_WRAPPED_PROGRAMS: dict[str, Any] = {}


def _parse_json(raw: bytes) -> Any:
    try:
        return loads_json(raw.decode("utf-8"))
    except RecursionError:
        raise DecodeError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise DecodeError(f"not valid JSON: {exc}"[:_REASON_CHARS]) from None


def read_nothing(raw: bytes) -> None:
    """An accept path that never accepts: ``read_plain`` without the compiled extension, or with no decoder."""
    return None


class EventDecoder:
    """Decodes and validates the messages of one input topic (``prediction``, ``access`` or ``data_change``).

    Build it once per topic: schemas are parsed at import, so ``decode`` does no schema work.
    """

    def __init__(
        self,
        event_type: str,
        *,
        max_message_bytes: int = 1 << 20,
        max_field_bytes: int = 1 << 16,
        max_map_entries: int = 1024,
        allowed_schema_ids: frozenset[int] | None = None,
    ) -> None:
        _event_type_known(event_type)
        self.event_type = event_type
        self.max_message_bytes = max_message_bytes
        self.allowed_schema_ids = allowed_schema_ids
        self._schema_name = EVENT_SCHEMAS[event_type]
        self._limits = _Limits(max_field_bytes, max_map_entries)
        self._compiled = None if _avrofast is None else _avro_program(event_type, self._limits, max_message_bytes,
                                                                       allowed_schema_ids)

    def decode(self, raw: bytes) -> Event:
        """The event in ``raw`` (any of the three formats); raises ``DecodeError`` with a readable reason."""
        raw = bytes(raw)
        if len(raw) > self.max_message_bytes:  # before any parsing: size is the cheapest defence
            raise DecodeError(f"message is {len(raw)} bytes, limit {self.max_message_bytes}", "too_large")
        if (event := self.read_plain(raw)) is not None:
            return event
        return _build_event(self.event_type, self._parse(raw), self._limits)

    def read_plain(self, raw: bytes) -> Event | None:
        """The event when ``raw`` is plainly valid plain or Confluent-framed Avro (the compiled path), else ``None``.

        ``None`` says nothing about validity: ``decode`` then tells the event from the error.
        """
        return None if self._compiled is None else _avrofast.read_message(self._compiled, raw)  # type: ignore[no-any-return]

    @property
    def plain_reader(self) -> Callable[[bytes], Event | None]:
        """``read_plain`` as one compiled call (no Python frame per message): for the worker's hot loop."""
        if self._compiled is None:
            return read_nothing
        return partial(_avrofast.read_message, self._compiled)  # type: ignore[union-attr]

    @property
    def run_reader(self) -> Callable[[list[Any]], tuple[list[Event], list[int]]] | None:
        """``plain_reader`` over a list of records (objects with a ``value``) in one compiled call: the
        events read, in order, and the positions of the records it declined. None when not compiled."""
        if self._compiled is None:
            return None
        return partial(_avrofast.read_messages, self._compiled)  # type: ignore[union-attr]

    def decode_or_dead_letter(
        self, raw: bytes, *, source_topic: str, partition: int, offset: int, received_at: int
    ) -> Event | DeadLetter:
        """The event, or the dead letter that explains why there is none (errors are data)."""
        try:
            return self.decode(raw)
        except DecodeError as exc:
            reason, error_kind = str(exc) or "undecodable message", exc.error_kind
        except Exception as exc:  # a codec bug must cost one message, never the partition
            reason, error_kind = f"internal decoder error: {type(exc).__name__}: {exc}"[:_REASON_CHARS], "malformed"
        return DeadLetter(source_topic, partition, offset, received_at, reason, error_kind, bytes(raw), self.event_type)

    def _parse(self, raw: bytes) -> Any:
        if not raw:
            raise DecodeError("empty message")
        if _looks_like_json(raw):
            return self._parse_json_or_avro(raw)
        if raw[0] == 0 and len(raw) > _CONFLUENT_HEADER:
            return self._parse_confluent(raw)
        return _read(self._schema_name, raw)

    def _parse_json_or_avro(self, raw: bytes) -> Any:
        """JSON first, then plain Avro: an event_id of 16 (or 5) characters starting with ``{`` zigzag-encodes
        its length as a space (or newline), so valid Avro can look like indented JSON."""
        try:
            return _parse_json(raw)
        except DecodeError as json_error:
            try:
                return _read(self._schema_name, raw)
            except DecodeError:
                raise json_error from None

    def _parse_confluent(self, raw: bytes) -> dict[str, Any]:
        """Confluent framing; plain Avro can start with 0 only for an empty event_id, which validation rejects."""
        schema_id = int.from_bytes(raw[1:_CONFLUENT_HEADER], "big")
        if self.allowed_schema_ids is not None and schema_id not in self.allowed_schema_ids:
            raise DecodeError(f"unknown schema id {schema_id}", "schema")
        try:
            return _read(self._schema_name, raw[_CONFLUENT_HEADER:])
        except DecodeError as framed_error:
            try:
                return _read(self._schema_name, raw)
            except DecodeError:
                raise framed_error from None


def decoder_for(
    event_type: str,
    *,
    max_message_bytes: int = 1 << 20,
    max_field_bytes: int = 1 << 16,
    max_map_entries: int = 1024,
    allowed_schema_ids: frozenset[int] | None = None,
) -> EventDecoder:
    """The decoder for topic type ``event_type`` (``prediction``, ``access``, ``data_change``) with these limits."""
    return EventDecoder(
        event_type,
        max_message_bytes=max_message_bytes,
        max_field_bytes=max_field_bytes,
        max_map_entries=max_map_entries,
        allowed_schema_ids=allowed_schema_ids,
    )
