"""Issue 4 "done when", on the real embedded broker and chDB through the unmodified Worker.

One stream carries three stories: a poisoned append to ``transactions`` followed by score
drift of ``fraud-model`` (which trains on it), a download burst by ``u3`` followed by a query
burst by ``u3`` (a test-only query-burst detector that re-fires every busy minute), and
enough quiet time afterwards for incidents to resolve and publish their reverts.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import pytest

from detectors._testing import MINUTE_MS, T0, data_change_stream, download_stream, score_stream
from detectors.base import DETECTORS
from detectors.events import AccessEvent, Event, event_type_name
from detectors.findings import Finding
from detectors.library import DEFAULT_DETECTORS
from streams.codec import decode_command
from streams.pipeline import engine_from_settings
from streams.publishing import encode_for_wire, partition_key, start_producer
from streams.store import IncidentStore, connect, ensure_schema, query
from streams.topics import ensure_topics, read_all
from streams.worker import Worker
from tests.conftest import isolated_settings

pytestmark = pytest.mark.integration


class MinuteQueryBurst:
    """Test double: a finding for every minute in which a principal queries more than ``limit`` times."""

    name: ClassVar[str] = "test_query_burst"
    event_types: ClassVar[tuple[type, ...]] = (AccessEvent,)

    def __init__(self, limit: int = 30) -> None:
        self.limit = limit
        self._counts: dict[tuple[str, int], int] = {}

    def clone(self) -> "MinuteQueryBurst":
        return MinuteQueryBurst(self.limit)

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, AccessEvent) or event.action != "query":
            return None
        key = (event.principal, event.ts // MINUTE_MS)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._counts[key] != self.limit + 1:
            return None
        return Finding(kind="query_burst", detector=self.name, ts=event.ts, window_start=key[1] * MINUTE_MS,
                       window_end=event.ts, score=self.limit + 1, threshold=self.limit, strength=0.6,
                       summary=f"{event.principal} sent more than {self.limit} queries in a minute",
                       principal=event.principal, evidence={"queries_in_window": str(self.limit + 1)})


def _queries(principal: str, from_minute: int, minutes: int, per_minute: int) -> list[AccessEvent]:
    start = T0 + from_minute * MINUTE_MS
    return [AccessEvent(event_id=f"q-{principal}-{index}", ts=start + index * (MINUTE_MS // per_minute),
                        principal=principal, action="query", resource_type="endpoint", resource="fraud-model/score")
            for index in range(minutes * per_minute)]


def story_events() -> list[Event]:
    changes = [e.__class__(**{**asdict(e), "consumers": ("fraud-model",)})
               for e in data_change_stream(5, 16, poison_at=8, step_ms=5 * MINUTE_MS)]  # poison at minute 40
    predictions = score_stream(5, 4800, change_at=2520, model=("fraud-model", "v1"))  # drift from minute 42
    downloads = download_stream(6, 20, 80, burst=("u3", 5, 200, 2))
    queries = _queries("u3", 9, 3, 60)
    return list(heapq.merge(changes, predictions, downloads, queries, key=lambda event: event.ts))


async def _publish(settings, bootstrap, events) -> None:
    topics = {kind: topic for topic, kind in settings.input_topics.items()}
    producer = await start_producer(bootstrap)
    try:
        futures = []
        for event in events:
            record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(event).items()}
            value = encode_for_wire(event, record, "json")
            futures.append(await producer.send(topics[event_type_name(event)], value=value, key=partition_key(event)))
        for future in futures:
            await future
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def outcome(embedded_broker, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("incidents_e2e")
    settings = isolated_settings(tmp_path, embedded_broker.bootstrap_servers,
                                 detectors=(*DEFAULT_DETECTORS, "test_query_burst"))
    events = story_events()
    DETECTORS["test_query_burst"] = MinuteQueryBurst  # only while this module runs: never seen by the contract suite
    try:
        return asyncio.run(_run(settings, embedded_broker.bootstrap_servers, events)), settings, events
    finally:
        del DETECTORS["test_query_burst"]


async def _run(settings, bootstrap, events):
    client = connect(settings.resolved_clickhouse_dsn, database=settings.clickhouse_database)
    try:
        ensure_schema(client, settings.clickhouse_database)
        await ensure_topics(settings, bootstrap)
        worker = Worker(settings, IncidentStore(client, settings.clickhouse_database), bootstrap)
        await worker.start()
        try:
            await _publish(settings, bootstrap, events)
            deadline = time.monotonic() + 120
            while worker.stats.events < len(events) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            await worker.stop()
        assert worker.stats.events == len(events), worker.stats
        db = settings.clickhouse_database
        incidents = _rows(client, f"SELECT incident_id, kind, status, case_id, updates, summary, principal, "
                                  f"model_id, dataset FROM {db}.incidents FINAL")
        events_per_incident = dict(query(client, f"SELECT incident_id, count() FROM {db}.incident_events FINAL "
                                                 f"GROUP BY incident_id")[1])
        log = _rows(client, f"SELECT command_id, action, mode, revert_of, outcome FROM {db}.containment_log FINAL")
        published = [decode_command(raw) for raw in await read_all(bootstrap, settings.topic_containment)]
        return {"incidents": incidents, "timeline": events_per_incident, "log": log, "published": published}
    finally:
        client.close()


def _rows(client, sql):
    columns, rows = query(client, sql)
    return [dict(zip(columns, row)) for row in rows]


def _one(incidents, **match):
    found = [i for i in incidents if all(i[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, incidents)
    return found[0]


def test_a_refiring_detector_yields_one_incident_with_updates(outcome):
    result, _, _ = outcome
    extraction = _one(result["incidents"], kind="query_burst", principal="u3")
    assert extraction["updates"] == 2, "three busy minutes: opened once, updated twice"
    assert result["timeline"][extraction["incident_id"]] >= 3


def test_a_poisoned_data_change_and_the_degradation_it_causes_are_one_case(outcome):
    result, _, _ = outcome
    shift = _one(result["incidents"], kind="label_shift", dataset="transactions")
    drift = _one(result["incidents"], kind="prediction_drift", model_id="fraud-model")
    assert shift["case_id"] is not None and shift["case_id"] == drift["case_id"]
    for summary in (shift["summary"], drift["summary"]):
        assert "dataset transactions version v9 from source partner-feed by contractor-7, with no approval" in summary
        assert "since then prediction scores of fraud-model:v1 moved from mean" in summary


def test_a_download_burst_followed_by_a_query_burst_is_one_case(outcome):
    result, _, _ = outcome
    theft = _one(result["incidents"], kind="download_burst", principal="u3")
    extraction = _one(result["incidents"], kind="query_burst", principal="u3")
    assert theft["case_id"] is not None and theft["case_id"] == extraction["case_id"]
    assert "then principal u3 queried" in theft["summary"]


def test_a_resolved_incident_publishes_revert_logged_in_clickhouse(outcome):
    result, _, _ = outcome
    theft = _one(result["incidents"], kind="download_burst", principal="u3")
    assert theft["status"] == "resolved"
    issued = {c["command_id"] for c in result["published"] if c["incident_id"] == theft["incident_id"]
              and c["action"] != "revert"}
    reverted = {c["revert_of"] for c in result["published"] if c["action"] == "revert"}
    assert issued and issued <= reverted
    logged_reverts = {row["revert_of"] for row in result["log"] if row["action"] == "revert"}
    assert issued <= logged_reverts


def test_dry_run_is_the_default_and_a_replay_issues_no_new_command_ids(outcome):
    result, settings, events = outcome
    assert {c["mode"] for c in result["published"]} == {"dry_run"}
    assert {row["outcome"] for row in result["log"]} == {"logged_dry_run"}
    published_ids = {c["command_id"] for c in result["published"]}
    DETECTORS["test_query_burst"] = MinuteQueryBurst
    try:
        replayed = engine_from_settings(settings).process_many(events)
    finally:
        del DETECTORS["test_query_burst"]
    assert {c.command_id for c in replayed.commands} == published_ids
    assert len(published_ids) == len(result["published"]), "each command id is published once"
