"""The contracts: Avro schemas for events, incidents, commands and dead letters, plus the ClickHouse DDL.

Files are found through ``importlib.resources`` so they load the same from a source tree
and from an installed wheel (``pyproject`` ships ``*.avsc`` and ``*.sql`` as package data).

>>> load_schema("incident")["name"]
'Incident'
"""

from __future__ import annotations

import json
from importlib.resources.abc import Traversable
from importlib.resources import files
from typing import Any

SCHEMA_NAMES: tuple[str, ...] = (
    "prediction_event",
    "access_event",
    "data_change_event",
    "incident",
    "containment_command",
    "dead_letter",
)


def schema_path(name: str) -> Traversable:
    """Resource path of ``<name>.avsc``; only known names, so a name can never walk out of the package."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    return files(__name__).joinpath(f"{name}.avsc")


def load_schema(name: str) -> dict[str, Any]:
    """A fresh parsed copy of schema ``name`` (callers may mutate it without affecting others)."""
    parsed: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return parsed


def clickhouse_ddl_path() -> Traversable:
    """Resource path of ``clickhouse.sql``, the analysts' tables for incidents and dead letters."""
    return files(__name__).joinpath("clickhouse.sql")
