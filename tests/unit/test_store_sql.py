"""Pure parts of the store: the read-only SQL guard, DSN checks, row building, buffering, tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from detectors.findings import Incident
from streams.store import (
    INCIDENT_COLUMNS,
    IncidentStore,
    UnsafeQueryError,
    check_read_only,
    chdb_path,
    connect,
    format_table,
    incident_row,
    query,
    schema_statements,
    sql_kind,
    strip_literals,
    utc,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1", "  select * from t;", "WITH 1 AS x SELECT x", "SHOW TABLES", "DESCRIBE TABLE t", "DESC t",
        "EXPLAIN SELECT 1", "EXISTS TABLE t", "(SELECT 1) UNION ALL (SELECT 2)",
        "SELECT 'a; DROP TABLE t' AS s", "SELECT 1 -- ; DROP TABLE t", "/* DROP */ SELECT `we;ird` FROM t",
        "SELECT 'it''s; fine', \"col;x\" FROM t;",
    ],
)  # fmt: skip
def test_guard_accepts_one_read_statement(sql: str) -> None:
    check_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)", "DROP TABLE t", "ALTER TABLE t DELETE WHERE 1", "TRUNCATE TABLE t",
        "CREATE TABLE x (a Int8) ENGINE=Memory", "OPTIMIZE TABLE t FINAL", "SET readonly = 0", "SYSTEM STOP MERGES",
        "SELECT 1; DROP TABLE x", "SELECT 1;SELECT 2", "-- SELECT\nDROP TABLE t", "/* SELECT */ DELETE FROM t WHERE 1",
        "SELECT * FROM t INTO OUTFILE '/tmp/x'", "", "   ;  ", "GRANT ALL ON *.* TO u",
    ],
)  # fmt: skip
def test_guard_rejects_writes_and_second_statements(sql: str) -> None:
    with pytest.raises(UnsafeQueryError):
        check_read_only(sql)


def test_strip_literals_hides_keywords_in_strings_and_comments() -> None:
    assert "DROP" not in strip_literals("SELECT 'DROP' /* DROP */ -- DROP\n")
    assert sql_kind("  -- note\n  with x AS (SELECT 1) SELECT * FROM x") == "WITH"


class RecordingClient:
    """A client double: records inserts and queries, optionally failing inserts."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.inserts: list[tuple[str, list[list[Any]], list[str]]] = []
        self.queries: list[tuple[str, Any, Any]] = []

    def command(self, cmd: str, parameters: Any = None, settings: Any = None) -> Any:
        return None

    def insert(self, table: str | None = None, data: Any = None, column_names: Any = "*", database: str | None = None, **kwargs: Any) -> Any:
        if table == self.fail_on:
            raise ConnectionError("ClickHouse unreachable")
        self.inserts.append((f"{database}.{table}", [list(row) for row in data], list(column_names)))

    def query(self, query: str | None = None, parameters: Any = None, settings: Any = None, **kwargs: Any) -> Any:
        self.queries.append((query, parameters, settings))
        return type("Result", (), {"column_names": ("x",), "result_rows": [[1]]})()


def incident(incident_id: str = "i-1") -> Incident:
    return Incident(incident_id, "volume_spike", "low", 1_000, 0, 999, "cusum", 2.0, 1.0, "spike")


def dead_letter(offset: int = 0) -> dict[str, Any]:
    return dict(source_topic="t", partition=0, offset=offset, received_at=5, reason="r", error_kind="malformed", raw=b"\x00")


def test_flush_writes_one_block_per_table() -> None:
    client = RecordingClient()
    store = IncidentStore(client, database="forensics")
    store.add_incident(incident("a"))
    store.add_incident(incident("b"))
    store.add_dead_letter(dead_letter())
    assert store.flush() == 5
    assert [(table, len(rows)) for table, rows, _ in client.inserts] == [
        ("forensics.incidents", 2), ("forensics.incident_events", 2), ("forensics.dead_letters", 1)]
    assert store.flush() == 0


def test_flush_failure_keeps_the_unwritten_buffer_and_reraises() -> None:
    client = RecordingClient(fail_on="dead_letters")
    store = IncidentStore(client)
    store.add_incident(incident())
    store.add_dead_letter(dead_letter(1))
    with pytest.raises(ConnectionError):
        store.flush()
    assert store.pending() == 1  # incidents were written; the dead letter waits for the retry
    client.fail_on = None
    assert store.flush() == 1
    assert [table for table, _, _ in client.inserts] == [
        "mlsentry.incidents", "mlsentry.incident_events", "mlsentry.dead_letters"]


def test_flush_failure_on_first_table_keeps_everything() -> None:
    store = IncidentStore(RecordingClient(fail_on="incidents"))
    store.add_incident(incident())
    store.add_dead_letter(dead_letter())
    with pytest.raises(ConnectionError):
        store.flush()
    assert store.pending() == 3


def test_incident_row_converts_times_and_null_segment() -> None:
    row = dict(zip(INCIDENT_COLUMNS, incident_row(incident())))
    assert row["detected_at"] == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert row["segment"] == {}
    assert row["version"] == 1_000 * 10
    assert utc(1_764_460_800_123).microsecond == 123_000


def test_query_sends_readonly_setting_and_parameters() -> None:
    client = RecordingClient()
    assert query(client, "SELECT {x:UInt8};", {"x": 1}) == (["x"], [(1,)])
    assert client.queries == [("SELECT {x:UInt8}", {"x": 1}, {"readonly": 1})]


def test_query_without_readonly_skips_guard() -> None:
    client = RecordingClient()
    query(client, "OPTIMIZE TABLE t FINAL", readonly=False)
    assert client.queries == [("OPTIMIZE TABLE t FINAL", None, None)]


@pytest.mark.parametrize("dsn", ["clickhouse://h:9000", "chdb://relative/dir", "chdb:///dir?x=1", "/abs/dir", ""])
def test_bad_dsns_are_rejected(dsn: str) -> None:
    with pytest.raises(ValueError):
        connect(dsn)


def test_chdb_path_is_absolute_and_normalised() -> None:
    assert chdb_path("chdb:///tmp/a/../b/") == "/tmp/b"


def test_database_must_be_an_identifier() -> None:
    with pytest.raises(ValueError):
        schema_statements("x; DROP DATABASE y")
    assert all("forensics." in statement or "DATABASE" in statement for statement in schema_statements("forensics"))


def test_schema_statements_split_without_comments() -> None:
    statements = schema_statements()
    assert len(statements) == 14
    assert all(("IF NOT EXISTS" in statement or "CREATE OR REPLACE VIEW" in statement) for statement in statements)
    assert all(statement.startswith(("CREATE ", "ALTER TABLE ")) for statement in statements)


def test_format_table() -> None:
    text = format_table(["id", "when", "note"], [("a", datetime(2025, 1, 1, tzinfo=UTC), None), ("bb", None, "x" * 80)], max_width=10)
    assert text.splitlines() == [
        "id  when        note",
        "--  ----------  ----------",
        "a   2025-01-0…  NULL",
        "bb  NULL        xxxxxxxxx…",
        "(2 rows)",
    ]
