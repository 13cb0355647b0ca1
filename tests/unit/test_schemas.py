"""The Avro contracts: they parse everywhere, and they agree with the Python types that fill them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import avro.schema
import fastavro
import pytest

from detectors.events import ACCESS_ACTIONS, ACCESS_OUTCOMES, CHANGE_KINDS, EVENT_TYPES, RESOURCE_TYPES
from detectors.findings import INCIDENT_KINDS, ContainmentCommand, Incident
from schemas import SCHEMA_NAMES, clickhouse_ddl_path, load_schema, schema_path
from streams.codec import EVENT_SCHEMAS, DeadLetter

pytestmark = pytest.mark.unit


def _fields(name: str) -> dict[str, dict[str, Any]]:
    return {field["name"]: field for field in load_schema(name)["fields"]}


def _enum_type(name: str, field: str) -> dict[str, Any]:
    avro_type: dict[str, Any] = _fields(name)[field]["type"]
    return avro_type


def _walk_types(node: Any) -> list[Any]:
    """Every nested type node of a schema, to look for forbidden logical types."""
    if isinstance(node, list):
        return [found for item in node for found in _walk_types(item)]
    if isinstance(node, dict):
        nested = [node.get("type"), node.get("values"), node.get("items"), *node.get("fields", [])]
        return [node, *(found for item in nested if item is not None for found in _walk_types(item))]
    return [node]


def test_every_schema_file_is_listed_and_exists() -> None:
    assert SCHEMA_NAMES == (
        "prediction_event",
        "access_event",
        "data_change_event",
        "incident",
        "containment_command",
        "dead_letter",
    )
    for name in SCHEMA_NAMES:
        assert schema_path(name).is_file(), name


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_parses_with_apache_avro_and_fastavro(name: str) -> None:
    schema = load_schema(name)
    parsed = avro.schema.parse(json.dumps(schema))
    assert parsed.fullname == f"io.mlsentry.{schema['name']}"
    assert fastavro.parse_schema(schema)["name"] == f"io.mlsentry.{schema['name']}"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_timestamps_are_plain_longs(name: str) -> None:
    logical = [node for node in _walk_types(load_schema(name)) if isinstance(node, dict) and "logicalType" in node]
    assert logical == []


def test_unknown_schema_name_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown schema"):
        schema_path("../pyproject")


def test_load_schema_returns_an_independent_copy() -> None:
    first = load_schema("incident")
    first["fields"].clear()
    assert len(load_schema("incident")["fields"]) == 28


def test_clickhouse_ddl_path_points_into_the_package() -> None:
    path = clickhouse_ddl_path()
    assert path.name == "clickhouse.sql"
    assert str(schema_path("incident")).rsplit("/", 1)[0] == str(path).rsplit("/", 1)[0]


@pytest.mark.parametrize(("event_type", "schema_name"), sorted(EVENT_SCHEMAS.items()))
def test_event_schema_fields_match_dataclass_in_order(event_type: str, schema_name: str) -> None:
    dataclass_fields = [field.name for field in dataclasses.fields(EVENT_TYPES[event_type])]
    assert list(_fields(schema_name)) == dataclass_fields


@pytest.mark.parametrize(("event_type", "schema_name"), sorted(EVENT_SCHEMAS.items()))
def test_avro_defaults_match_dataclass_defaults(event_type: str, schema_name: str) -> None:
    """A JSON publisher that omits a field must get the same value a Python publisher would."""
    schema_fields = _fields(schema_name)
    for field in dataclasses.fields(EVENT_TYPES[event_type]):
        if field.default is not dataclasses.MISSING:
            expected: Any = field.default
        elif field.default_factory is not dataclasses.MISSING:
            expected = field.default_factory()
        else:
            assert "default" not in schema_fields[field.name], field.name
            continue
        default = schema_fields[field.name]["default"]
        assert (tuple(default) if isinstance(expected, tuple) else default) == expected, field.name


def test_enum_symbols_match_python_constants() -> None:
    assert tuple(_enum_type("access_event", "action")["symbols"]) == ACCESS_ACTIONS
    assert tuple(_enum_type("access_event", "resource_type")["symbols"]) == RESOURCE_TYPES
    assert tuple(_enum_type("access_event", "outcome")["symbols"]) == ACCESS_OUTCOMES
    assert tuple(_enum_type("data_change_event", "change")["symbols"]) == CHANGE_KINDS


def test_open_enums_default_to_other_and_outcome_has_no_fallback() -> None:
    assert _enum_type("access_event", "action")["default"] == "other"
    assert _enum_type("access_event", "resource_type")["default"] == "other"
    assert _enum_type("data_change_event", "change")["default"] == "other"
    assert "default" not in _enum_type("access_event", "outcome")


def test_incident_schema_matches_to_record_and_documents_every_kind() -> None:
    record = Incident("i", "feature_drift", "high", 1, 0, 1, "d", 1.0, 0.5, "s").to_record()
    assert list(_fields("incident")) == list(record)
    kind_doc = _fields("incident")["kind"]["doc"]
    assert [kind for kind in INCIDENT_KINDS if kind not in kind_doc] == []
    assert _fields("incident")["kind"]["type"] == "string"


def test_command_and_dead_letter_schemas_match_to_record() -> None:
    command = ContainmentCommand("c", "i", 1, "throttle", "principal", "p", "enforce", 2, "r")
    assert list(_fields("containment_command")) == list(command.to_record())
    dead_letter = DeadLetter("t", 0, 1, 2, "r", "malformed", b"x", None)
    assert list(_fields("dead_letter")) == list(dead_letter.to_record())
