"""Events published to the real embedded broker come out as ClickHouse rows and Kafka commands.

Real tansu broker, real aiokafka/Faust clients, real chDB: nothing is mocked.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import pytest

from detectors.engine import Engine
from streams.codec import decode_command, decode_dead_letter, decode_incident
from streams.pipeline import engine_from_settings
from streams.publishing import encode_for_wire, partition_key, start_producer
from streams.replay import replay
from streams.simulator import SimulationConfig, simulate
from streams.codec import event_from_record
from streams.store import IncidentStore, connect, ensure_schema, query
from streams.topics import ensure_topics, read_all
from streams.worker import Worker
from tests.conftest import isolated_settings

pytestmark = pytest.mark.integration

WIRE = {"prediction": "avro", "access": "json", "data_change": "confluent"}


async def _publish(settings, bootstrap, items, extra_access_values=()):
    topics = {kind: topic for topic, kind in settings.input_topics.items()}
    producer = await start_producer(bootstrap)
    try:
        futures = []
        for index, item in enumerate(items):
            event = event_from_record(item["type"], item["event"])
            value = encode_for_wire(event, item["event"], WIRE[item["type"]])
            futures.append(await producer.send(topics[item["type"]], value=value, key=partition_key(event)))
            if index < len(extra_access_values):
                futures.append(await producer.send(settings.topic_access, value=extra_access_values[index]))
        for future in futures:
            await future
    finally:
        await producer.stop()


async def _run_until(worker, condition, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert condition(), f"worker stats at timeout: {worker.stats}"


@pytest.fixture
def scenario():
    return simulate(SimulationConfig(seed=11))


def _replay_incident_ids(settings, scenario) -> set[str]:
    lines = [json.dumps(record) for record in scenario.records]
    out = io.StringIO()
    replay(lines, engine_from_settings(settings), out)
    return {json.loads(line)["incident_id"] for line in out.getvalue().splitlines()}


@pytest.mark.parametrize("whole_batches", [True, False], ids=["whole fetches", "getmany"])
async def test_published_attacks_become_incident_rows_and_containment_commands(embedded_broker, tmp_path: Path, scenario,
                                                                               whole_batches):
    settings = isolated_settings(tmp_path, embedded_broker.bootstrap_servers, fetch_whole_batches=whole_batches)
    bootstrap = embedded_broker.bootstrap_servers
    client = connect(settings.resolved_clickhouse_dsn, database=settings.clickhouse_database)
    ensure_schema(client, settings.clickhouse_database)
    store = IncidentStore(client, settings.clickhouse_database)
    await ensure_topics(settings, bootstrap)
    malformed = [b"\xff\xfe garbage", b'{"event_id": "a", "ts": -5}', b"{" * 5000, b""]

    worker = Worker(settings, store, bootstrap)
    await worker.start()
    assert worker.reads_whole_fetches is whole_batches
    try:
        await _publish(settings, bootstrap, scenario.records, malformed)
        expected = len(scenario.records) + len(malformed)
        await _run_until(worker, lambda: worker.stats.events + worker.stats.dead_letters >= expected)
    finally:
        await worker.stop()
    try:
        await _check_outputs(settings, bootstrap, client, scenario, worker, malformed)
    finally:
        client.close()  # chDB: one open directory per process


async def _check_outputs(settings, bootstrap, client, scenario, worker, malformed):

    # One worker, one assignment: every record exactly once (at least once across rebalances and crashes;
    # the take-over's seek used to race the first fetch and read a partition's start twice).
    assert worker.stats.events == len(scenario.records), "every valid event around the bad ones, once"
    assert worker.stats.dead_letters == len(malformed)

    columns, rows = query(client, f"SELECT incident_id, kind FROM {settings.clickhouse_database}.incidents FINAL")
    stored = {row[0]: row[1] for row in rows}
    assert {"prediction_drift", "download_burst", "label_shift"} <= set(stored.values())
    assert set(stored) == _replay_incident_ids(settings, scenario), "worker and replay agree on incident ids"

    commands = [decode_command(raw) for raw in await read_all(bootstrap, settings.topic_containment)]
    assert commands and {c["incident_id"] for c in commands} <= set(stored)
    assert all(c["mode"] == "dry_run" and c["expires_at"] > c["issued_at"] for c in commands)
    throttled = {c["target"] for c in commands if c["action"] == "throttle"}
    assert "contractor-17" in throttled

    published_incidents = [decode_incident(raw) for raw in await read_all(bootstrap, settings.topic_incidents)]
    assert {incident["incident_id"] for incident in published_incidents} == set(stored)

    dead_letters = [decode_dead_letter(raw) for raw in await read_all(bootstrap, settings.topic_dead_letter)]
    by_position = {(d["partition"], d["offset"]): d["raw"] for d in dead_letters}
    assert sorted(by_position.values()) == sorted(malformed), "one dead letter per bad message (after dedup)"
    assert all(d["reason"] and d["source_topic"] == settings.topic_access for d in dead_letters)
    _, dl_rows = query(client, f"SELECT count() FROM {settings.clickhouse_database}.dead_letters FINAL")
    assert dl_rows[0][0] == len(malformed)


async def test_replay_of_the_same_events_is_deterministic(tmp_path: Path, scenario):
    settings = isolated_settings(tmp_path, "unused:9092")
    first = _replay_incident_ids(settings, scenario)
    second = _replay_incident_ids(settings, scenario)
    assert first == second and len(first) >= 3


async def test_a_backlog_is_read_exactly_once_on_the_first_assignment(embedded_broker, tmp_path: Path, scenario):
    """Many partitions with a backlog: the take-over of one partition must not re-read what was already
    handed out for another. (seek_to_beginning reset positions asynchronously, so a partition's first
    batch came out twice when the fetcher had started on it before its take-over.)"""
    bootstrap = embedded_broker.bootstrap_servers
    settings = isolated_settings(tmp_path, bootstrap, topic_partitions=8, batch_size=500)
    records = scenario.records[:12_000]
    await ensure_topics(settings, bootstrap)
    await _publish(settings, bootstrap, records)
    client = connect(settings.resolved_clickhouse_dsn)
    ensure_schema(client)
    worker = Worker(settings, IncidentStore(client), bootstrap)
    await worker.start()
    try:
        await _run_until(worker, lambda: worker.stats.events >= len(records))
        settled = -1
        while settled != worker.stats.events:  # wait until nothing more arrives
            settled = worker.stats.events
            await asyncio.sleep(1.0)
    finally:
        await worker.stop()
        client.close()
    assert worker.stats.events == len(records)


async def test_snapshots_are_written_while_a_backlog_is_processed(embedded_broker, tmp_path: Path, scenario):
    """Outputs of one batch are written while the next is detected, so a batch is always in flight under load;
    a due snapshot must still be taken then, not only when the stream goes idle."""
    bootstrap = embedded_broker.bootstrap_servers
    settings = isolated_settings(tmp_path, bootstrap, batch_size=200, snapshot_key="k", snapshot_every_events=1_000,
                                 snapshot_every_s=3_600.0)
    settings = settings.replace(topic_snapshots=f"{settings.group_id}.snapshots")
    records = scenario.records[:8_000]
    await ensure_topics(settings, bootstrap)
    await _publish(settings, bootstrap, records)
    client = connect(settings.resolved_clickhouse_dsn)
    ensure_schema(client)
    during_backlog: list[int] = []
    worker = Worker(settings, IncidentStore(client), bootstrap,
                    lambda result: during_backlog.append(worker.stats.snapshots_written)
                    if worker.stats.events < len(records) - 1_000 else None)
    await worker.start()
    try:
        await _run_until(worker, lambda: worker.stats.events >= len(records))
    finally:
        await worker.stop()
        client.close()
    assert during_backlog and during_backlog[-1] > 0, "no snapshot until the backlog was drained"
