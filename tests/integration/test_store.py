"""The ClickHouse incident store against a real embedded ClickHouse (chDB)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detectors.findings import ContainmentCommand, Incident
from streams.store import (
    IncidentStore,
    StoreBusyError,
    UnsafeQueryError,
    connect,
    ensure_schema,
    query,
    utc,
)

pytestmark = pytest.mark.integration

DETECTED_AT = 1_764_460_800_123  # 2025-11-30 00:00:00.123 UTC


def make_incident(incident_id: str = "inc-1", **changes: Any) -> Incident:
    fields: dict[str, Any] = dict(
        incident_id=incident_id,
        kind="feature_drift",
        severity="high",
        detected_at=DETECTED_AT,
        window_start=DETECTED_AT - 60_000,
        window_end=DETECTED_AT - 1,
        detector="adwin",
        score=3.25,
        threshold=0.5,
        summary="age drifted",
        model_id="fraud",
        model_version="7",
        segment={"region": "EU", "device": "android"},
        principal="svc-a",
        resource=None,
        dataset="loans",
        evidence={"feature": "age", "p_value": "0.001"},
        recommended_actions=("freeze_model", "page_owner"),
    )
    fields.update(changes)
    return Incident(**fields)


def make_command() -> ContainmentCommand:
    return ContainmentCommand(
        command_id="cmd-1",
        incident_id="inc-1",
        issued_at=DETECTED_AT + 5,
        action="rate_limit",
        target_type="principal",
        target="svc-a",
        mode="dry_run",
        expires_at=DETECTED_AT + 3_600_000,
        reason="query burst",
        params={"rps": "1"},
        reversible=True,
    )


def incident_records(client: Any) -> list[dict[str, Any]]:
    columns, rows = query(client, "SELECT * FROM mlsentry.incidents_latest ORDER BY incident_id")
    return [dict(zip(columns, row)) for row in rows]


def as_stored(incident: Incident) -> dict[str, Any]:
    """What a read of ``incident`` should give: aware UTC datetimes, {} for a null segment."""
    expected = incident.to_record()
    for name in ("detected_at", "window_start", "window_end", "updated_at"):
        expected[name] = utc(expected[name])
    expected["segment"] = expected["segment"] or {}
    return expected


def test_schema_applies_twice(chdb_client: Any) -> None:
    ensure_schema(chdb_client)
    _, rows = query(chdb_client, "SHOW TABLES FROM mlsentry")
    assert sorted(name for (name,) in rows) == [
        "case_timeline", "containment_commands", "containment_log", "dataset_version_incidents", "dead_letters",
        "incident_events", "incident_evidence", "incidents", "incidents_latest", "open_incidents_by_severity",
        "principal_activity",
    ]  # fmt: skip


def test_schema_in_another_database(chdb_client: Any) -> None:
    ensure_schema(chdb_client, "forensics")
    assert query(chdb_client, "EXISTS TABLE forensics.incidents") == (["result"], [(1,)])


def test_incidents_round_trip_exactly(store: IncidentStore, chdb_client: Any) -> None:
    full = make_incident("inc-1")
    sparse = make_incident("inc-2", segment=None, model_id=None, model_version=None, principal=None,
                           dataset=None, evidence={}, recommended_actions=(), status="contained")  # fmt: skip
    store.add_incident(full)
    store.add_incident(sparse)
    assert store.pending() == 4  # incidents and incident_events
    assert store.flush() == 4
    assert store.pending() == 0
    records = incident_records(chdb_client)
    for record in records:
        assert record.pop("version") > 0
        assert isinstance(record.pop("inserted_at"), datetime)
    assert records == [as_stored(full), as_stored(sparse)]
    assert records[0]["detected_at"] == datetime(2025, 11, 30, 0, 0, 0, 123_000, tzinfo=UTC)


def test_commands_round_trip_exactly(store: IncidentStore, chdb_client: Any) -> None:
    command = make_command()
    store.add_command(command)
    assert store.flush() == 2  # containment_commands and containment_log
    columns, rows = query(chdb_client, "SELECT * EXCEPT (version, inserted_at) FROM mlsentry.containment_commands FINAL")
    expected = command.to_record()
    expected["issued_at"] = utc(command.issued_at)
    expected["expires_at"] = utc(command.expires_at)
    assert [dict(zip(columns, row)) for row in rows] == [expected]


def test_dead_letters_keep_raw_bytes(store: IncidentStore, chdb_client: Any) -> None:
    # dead_letters has a 30-day TTL that drops expired rows at insert, so the time must be recent
    received_at = int(time.time() * 1000)
    raw = b"\xff\x00not avro\x80"
    store.add_dead_letter(dict(source_topic="mlsentry.predictions", partition=2, offset=41, received_at=received_at,
                               reason="truncated record", error_kind="malformed", raw=raw, event_type=None))  # fmt: skip
    store.add_dead_letter(dict(source_topic="mlsentry.access", partition=0, offset=7, received_at=received_at,
                               reason="bad enum", error_kind="schema", raw=b"{}", event_type="access"))  # fmt: skip
    assert store.flush() == 2
    result = chdb_client.query(
        "SELECT source_topic, partition, offset, received_at, reason, error_kind, event_type, raw "
        "FROM mlsentry.dead_letters ORDER BY offset DESC",
        query_formats={"String": "bytes"},
    )
    assert result.result_rows == [
        (b"mlsentry.predictions", 2, 41, utc(received_at), b"truncated record", b"malformed", None, raw),
        (b"mlsentry.access", 0, 7, utc(received_at), b"bad enum", b"schema", b"access", b"{}"),
    ]
    assert query(chdb_client, "SELECT hex(raw) FROM mlsentry.dead_letters WHERE offset = {o:Int64}", {"o": 41})[1] == [
        (raw.hex().upper(),)
    ]


def test_duplicate_incident_ids_collapse_to_latest(store: IncidentStore, chdb_client: Any) -> None:
    store.add_incident(make_incident("inc-1"))
    store.flush()
    store.add_incident(make_incident("inc-1", status="contained", summary="rate limited"))
    store.add_incident(make_incident("inc-1"))  # a replay of the first version must not win
    store.flush()
    # rows only collapse when parts merge, so the raw count is 1..3; FINAL and argMax are exact
    latest_status = "SELECT argMax(status, version) FROM mlsentry.incidents GROUP BY incident_id"
    assert query(chdb_client, latest_status)[1] == [("contained",)]
    latest = incident_records(chdb_client)
    assert [(r["incident_id"], r["status"], r["summary"]) for r in latest] == [("inc-1", "contained", "rate limited")]


def test_open_incidents_by_severity(store: IncidentStore, chdb_client: Any) -> None:
    for number, severity in enumerate(["low", "critical", "low", "high"]):
        store.add_incident(make_incident(f"inc-{number}", severity=severity))
    store.add_incident(make_incident("inc-9", severity="critical", status="resolved"))
    store.flush()
    _, rows = query(chdb_client, "SELECT severity, open_incidents FROM mlsentry.open_incidents_by_severity")
    assert rows == [("critical", 1), ("high", 1), ("low", 2)]


def test_max_buffer_flushes_automatically(chdb_client: Any) -> None:
    store = IncidentStore(chdb_client, max_buffer=3)
    for number in range(7):
        store.add_incident(make_incident(f"inc-{number}"))
    assert store.pending() == 2  # each incident is two rows (incidents + incident_events): flushed at 4, 8, 12
    assert query(chdb_client, "SELECT count() FROM mlsentry.incidents")[1] == [(6,)]


def test_parameterised_query(store: IncidentStore, chdb_client: Any) -> None:
    store.add_incident(make_incident("inc-1", severity="high"))
    store.add_incident(make_incident("inc-2", severity="low"))
    store.flush()
    sql = "SELECT incident_id FROM mlsentry.incidents_latest WHERE severity = {severity:String}"
    assert query(chdb_client, sql, {"severity": "low"}) == (["incident_id"], [("inc-2",)])


@pytest.mark.parametrize(
    "sql",
    ["INSERT INTO mlsentry.incidents (incident_id) VALUES ('x')", "DROP TABLE mlsentry.incidents",
     "ALTER TABLE mlsentry.incidents DELETE WHERE 1", "SELECT 1; DROP TABLE mlsentry.incidents"],
)  # fmt: skip
def test_query_guard_rejects_writes_and_table_survives(chdb_client: Any, sql: str) -> None:
    with pytest.raises(UnsafeQueryError):
        query(chdb_client, sql)
    assert query(chdb_client, "SELECT count() FROM mlsentry.incidents") == (["count()"], [(0,)])


def test_readonly_setting_is_enforced_by_clickhouse(chdb_client: Any) -> None:
    # the guard lets SELECT through; the engine's readonly=1 still refuses table functions that touch files
    with pytest.raises(Exception, match="readonly"):
        query(chdb_client, "SELECT * FROM file('/etc/hostname', 'LineAsString')")


def test_data_persists_for_a_new_process(chdb_dir: Path) -> None:
    client = connect(f"chdb://{chdb_dir}")
    ensure_schema(client)
    store = IncidentStore(client)
    store.add_incident(make_incident("inc-persisted"))
    store.flush()
    client.close()
    script = (
        "import sys; from streams.store import connect, query\n"
        "client = connect('chdb://' + sys.argv[1])\n"
        "print(query(client, 'SELECT incident_id, severity FROM mlsentry.incidents_latest')[1])\n"
        "client.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(chdb_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('inc-persisted', 'high')]"


def test_second_process_gets_a_clear_error_while_the_directory_is_held(chdb_client: Any, chdb_dir: Path) -> None:
    script = (
        "import sys\nfrom streams.store import StoreBusyError, connect\n"
        "try:\n    connect('chdb://' + sys.argv[1])\nexcept StoreBusyError as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(chdb_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "another process" in done.stdout


def test_same_process_cannot_open_a_second_directory(chdb_client: Any, tmp_path: Path) -> None:
    with pytest.raises(StoreBusyError, match="this process already has another chDB directory open"):
        connect(f"chdb://{tmp_path / 'other'}")


def test_clients_on_the_same_directory_share_data(store: IncidentStore, chdb_dir: Path) -> None:
    store.add_incident(make_incident("inc-shared"))
    store.flush()
    second = connect(f"chdb://{chdb_dir}")
    try:
        assert query(second, "SELECT incident_id FROM mlsentry.incidents")[1] == [("inc-shared",)]
    finally:
        second.close()
