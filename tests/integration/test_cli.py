"""The `mlsentry` command line, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streams.codec import event_from_record
from streams.store import IncidentStore, connect, ensure_schema
from streams.topics import read_all
from detectors.findings import Finding, Incident

pytestmark = pytest.mark.integration


def mlsentry(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"mlsentry {args} exited {result.returncode}: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def simulated_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "events.jsonl"
    mlsentry("simulate", "--out", str(path), "--seed", "7")
    return path


def test_replay_is_deterministic_and_catches_every_injected_attack(simulated_events: Path, tmp_path: Path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    mlsentry("replay", "--events", str(simulated_events), "--incidents", str(first))
    mlsentry("replay", "--events", str(simulated_events), "--incidents", str(second))
    assert first.read_bytes() == second.read_bytes()
    incidents = [json.loads(line) for line in first.read_text().splitlines()]
    assert {"prediction_drift", "download_burst", "label_shift"} <= {i["kind"] for i in incidents}
    contract_fields = {"incident_id", "kind", "severity", "detected_at", "window_start", "window_end", "model_id",
                       "model_version", "segment", "principal", "resource", "dataset", "detector", "score",
                       "threshold", "evidence", "summary", "recommended_actions", "status", "case_id", "updated_at",
                       "playbook_id", "investigation_queries", "affected_predictions", "related_incidents",
                       "impact_tier", "owners", "updates"}
    assert all(set(incident) == contract_fields for incident in incidents)


def test_replay_dead_letters_bad_lines_and_keeps_the_rest(tmp_path: Path):
    good = {"type": "access", "event": {"event_id": "e1", "ts": 1, "principal": "p", "action": "download",
                                         "resource_type": "model", "resource": "m:v1", "outcome": "success"}}
    lines = [json.dumps(good), "{broken", json.dumps({"type": "weather", "event": {}}),
             json.dumps({**good, "event": {**good["event"], "ts": "soon"}}), json.dumps(good)]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    result = mlsentry("replay", "--events", str(events), "--incidents", str(tmp_path / "out.jsonl"))
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    timing = {"seconds": summary.pop("seconds"), "events_per_s": summary.pop("events_per_s")}
    assert summary == {"lines": 5, "events": 2, "incidents": 0, "commands": 0, "dead_letters": 3}
    assert timing["seconds"] >= 0 and timing["events_per_s"] >= 0
    assert "line 2" in result.stderr and "line 3" in result.stderr and "line 4" in result.stderr


def test_publish_sends_every_line_to_the_topic(embedded_broker, tmp_path: Path):
    import asyncio

    events = tmp_path / "access.jsonl"
    record = {"event_id": "x", "ts": 5, "principal": "p", "action": "query", "resource_type": "endpoint",
              "resource": "fraud-api", "count": 3, "outcome": "success"}
    events.write_text("\n".join(json.dumps({**record, "event_id": f"x{i}"}) for i in range(25)) + "\n")
    topic = f"cli-publish-{tmp_path.name[-8:]}"
    result = mlsentry("--bootstrap-servers", embedded_broker.bootstrap_servers, "publish", "--topic", topic,
                      "--type", "access", "--format", "avro", str(events))
    assert json.loads(result.stdout)["sent"] == 25
    values = asyncio.run(read_all(embedded_broker.bootstrap_servers, topic))
    assert len(values) == 25
    from streams.codec import decoder_for

    decoded = sorted(decoder_for("access").decode(value).event_id for value in values)
    assert decoded == sorted(f"x{i}" for i in range(25))


def test_sql_reads_incidents_and_refuses_writes(tmp_path: Path):
    dsn = f"chdb://{tmp_path / 'ch'}"
    client = connect(dsn)
    try:
        ensure_schema(client)
        store = IncidentStore(client)
        finding = Finding(kind="download_burst", detector="download_burst", ts=10_000, window_start=0,
                          window_end=10_000, score=42.0, threshold=20.0, strength=0.8,
                          summary="contractor-17 downloaded 42 artifacts", principal="contractor-17")
        store.add_incident(Incident.from_finding(finding))
        store.flush()
    finally:
        client.close()
    result = mlsentry("--clickhouse-dsn", dsn, "sql", "--json", "SELECT kind, principal, score FROM mlsentry.incidents FINAL")
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"kind": "download_burst", "principal": "contractor-17", "score": 42.0}]
    refused = mlsentry("--clickhouse-dsn", dsn, "sql", "DROP TABLE mlsentry.incidents", check=False)
    assert refused.returncode == 2
    assert "statements are allowed, got DROP" in refused.stderr
    still_there = mlsentry("--clickhouse-dsn", dsn, "sql", "SELECT count() AS n FROM mlsentry.incidents FINAL")
    assert still_there.stdout.splitlines()[-2].strip() == "1"
