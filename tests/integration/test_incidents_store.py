"""Incident tables and views on chDB, and the investigation CLI (`incidents`, `contain revert`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.containment import ContainmentPolicy
from detectors.incidents import EngineOutput, IncidentBook
from streams.codec import decode_command
from streams.store import IncidentStore, connect, ensure_schema, query
from streams.topics import read_all
from tests.unit.incident_helpers import MINUTE, T0, deploy, finding, prediction, tick

pytestmark = pytest.mark.integration

POISON = {"version": "v42", "source": "vendor-upload", "actor": "mallory", "approved_by": "",
          "consumers": "fraud", "new_proportions": "fraud=0.42", "baseline_proportions": "fraud=0.03"}


def story() -> EngineOutput:
    book, output = IncidentBook(ContainmentPolicy(ttl_ms=240 * MINUTE), quiet_ms=60 * MINUTE), EngineOutput()
    book.observe(deploy(T0 - MINUTE, "fraud", "v3", "sha256:f3"), output)
    book.handle(finding("label_shift", dataset="fraud-train", evidence=POISON), output)
    book.handle(finding("prediction_drift", ts=T0 + 10 * MINUTE, model_id="fraud", model_version="v3",
                        evidence={"baseline_mean": "0.2", "recent_mean": "0.6"}), output)
    for index in range(5):
        book.observe(prediction(T0 + 10 * MINUTE + index, index=index), output)
    book.handle(finding("download_burst", ts=T0 + 20 * MINUTE, principal="o'hara"), output)
    book.observe(tick(T0 + 20 * MINUTE, principal="o'hara"), output)
    book.observe(tick(T0 + 200 * MINUTE), output)
    return output


@pytest.fixture
def stored(chdb_dir: Path):
    client = connect(f"chdb://{chdb_dir}")
    try:
        ensure_schema(client)
        store = IncidentStore(client)
        output = story()
        store.add_output(output)
        store.flush()
        yield client, output
    finally:
        client.close()


def test_latest_state_timeline_log_and_evidence_tables(stored):
    client, output = stored
    drift = next(i for i in output.incidents if i.kind == "prediction_drift")
    _, rows = query(client, "SELECT status, case_id FROM mlsentry.incidents FINAL WHERE incident_id = {i:String}",
                    {"i": drift.incident_id})
    assert rows == [("resolved", drift.case_id)]
    _, timeline = query(client, "SELECT status FROM mlsentry.incident_events FINAL WHERE incident_id = {i:String} "
                                "ORDER BY version", {"i": drift.incident_id})
    assert [status for (status,) in timeline] == ["open", "resolved"]
    _, log = query(client, "SELECT action, outcome, revert_of FROM mlsentry.containment_log FINAL")
    assert {row[1] for row in log} == {"logged_dry_run"} and any(row[0] == "revert" and row[2] for row in log)
    _, evidence = query(client, "SELECT count() FROM mlsentry.incident_evidence WHERE incident_id = {i:String}",
                        {"i": drift.incident_id})
    assert evidence == [(5,)]
    _, commands = query(client, "SELECT count() FROM mlsentry.containment_commands FINAL")
    assert commands[0][0] == len({c.command_id for c in output.commands})


def test_views_answer_the_common_questions(stored):
    client, output = stored
    drift = next(i for i in output.incidents if i.kind == "prediction_drift")
    _, case = query(client, "SELECT DISTINCT kind FROM mlsentry.case_timeline WHERE case_id = {c:String}",
                    {"c": drift.case_id})
    assert {kind for (kind,) in case} == {"label_shift", "prediction_drift"}
    _, by_version = query(client, "SELECT kind FROM mlsentry.dataset_version_incidents(dataset = 'fraud-train', "
                                  "version = 'v42') ORDER BY kind")
    assert by_version == [("label_shift",), ("prediction_drift",)]
    _, activity = query(client, "SELECT DISTINCT source FROM mlsentry.principal_activity(principal = 'o\\'hara', "
                                "since = '2020-01-01 00:00:00', until = '2030-01-01 00:00:00')")
    assert {source for (source,) in activity} == {"event", "incident", "containment"}
    _, open_rows = query(client, "SELECT sum(open_incidents) FROM mlsentry.open_incidents_by_severity")
    assert open_rows == [(0,)], "everything resolved by the end of the story"


def test_every_stored_investigation_query_runs(stored):
    client, output = stored
    for incident in output.incidents:
        for sql in incident.investigation_queries:
            query(client, sql)  # raises on a syntax error or an unknown table


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_incidents_cli_lists_shows_and_contain_revert_publishes(chdb_dir: Path, embedded_broker, tmp_path: Path):
    client = connect(f"chdb://{chdb_dir}")
    ensure_schema(client)
    store, output = IncidentStore(client), story()
    store.add_output(output)
    store.flush()
    client.close()  # chDB: the CLI subprocess needs the directory
    dsn = ["--clickhouse-dsn", f"chdb://{chdb_dir}"]
    listed = _cli(*dsn, "incidents", "--kind", "prediction_drift")
    assert listed.returncode == 0 and "prediction_drift" in listed.stdout and "label_shift" not in listed.stdout
    drift = next(i for i in output.incidents if i.kind == "prediction_drift")
    shown = _cli(*dsn, "incidents", "show", drift.incident_id)
    assert shown.returncode == 0, shown.stderr
    for heading in ("Timeline:", "Containment:", "Evidence:", "Investigate:", "dataset fraud-train version v42"):
        assert heading in shown.stdout
    command = next(c for c in output.commands if c.action != "revert")
    topic = f"ops-{tmp_path.name[-8:]}.containment"
    asyncio.run(_create(embedded_broker.bootstrap_servers, topic))
    reverted = _cli(*dsn, "--bootstrap-servers", embedded_broker.bootstrap_servers, "contain", "revert",
                    command.command_id, env={"MLSENTRY_TOPIC_CONTAINMENT": topic})
    assert reverted.returncode == 0, reverted.stderr
    published = [decode_command(raw) for raw in asyncio.run(read_all(embedded_broker.bootstrap_servers, topic))]
    assert [(c["action"], c["revert_of"], c["params"].get("operator")) for c in published] == [
        ("revert", command.command_id, "true")]
    assert json.loads(reverted.stdout)["command_id"] == published[0]["command_id"]
    assert _cli(*dsn, "--bootstrap-servers", embedded_broker.bootstrap_servers, "contain", "revert", "nope",
                env={"MLSENTRY_TOPIC_CONTAINMENT": topic}).returncode == 1


async def _create(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
