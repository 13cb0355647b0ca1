"""`mlsentry demo`: embedded broker + embedded ClickHouse + worker + simulated attacks.

Starts tansu on a free loopback port, opens chDB under ``<data_dir>/clickhouse``, runs
the Faust worker in this process and publishes three hours (event time) of simulated
traffic in the three wire formats (predictions as Avro, access events as JSON, data
changes with Confluent framing) plus a few malformed messages. Incidents are printed
as they are detected; at the end it shows what was caught, the rows in ClickHouse, the
commands on the containment topic and SQL to investigate further.
"""

from __future__ import annotations

import asyncio
import shutil
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from detectors.findings import Incident
from streams.broker import EmbeddedBroker
from streams.codec import decode_command
from streams.pipeline import BatchResult
from streams.publishing import encode_for_wire, partition_key, start_producer
from streams.settings import Settings
from streams.simulator import Scenario, SimulationConfig, simulate
from streams.codec import event_from_record
from streams.store import IncidentStore, connect_with, ensure_schema, format_table, query
from streams.topics import ensure_topics, read_all
from streams.worker import Worker

Printer = Callable[[str], None]
MALFORMED = (b"\x00\x00\x00", b"{not json", b'{"event_id": "x", "ts": "yesterday"}', b"\xff" * 40)


@dataclass
class DemoReport:
    published: int = 0
    malformed: int = 0
    incidents: list[Incident] = field(default_factory=list)
    commands: list[dict] = field(default_factory=list)
    caught: dict[str, int | None] = field(default_factory=dict)
    elapsed_s: float = 0.0


def _wire_format(event_type: str) -> str:
    return {"prediction": "avro", "access": "json", "data_change": "confluent"}[event_type]


async def _publish(scenario: Scenario, settings: Settings, bootstrap: str, out: Printer) -> int:
    producer = await start_producer(bootstrap, settings)
    topics = {kind: topic for topic, kind in settings.input_topics.items()}
    chunks = 12
    size = len(scenario.records) // chunks + 1
    try:
        for start in range(0, len(scenario.records), size):
            futures = []
            for item in scenario.records[start:start + size]:
                event = event_from_record(item["type"], item["event"])
                value = encode_for_wire(event, item["event"], _wire_format(item["type"]))
                futures.append(await producer.send(topics[item["type"]], value=value, key=partition_key(event)))
            if start == 0:  # hostile bytes between valid events: dead-lettered, neighbours kept
                for raw in MALFORMED:
                    futures.append(await producer.send(settings.topic_access, value=raw))
            for future in futures:
                await future
            await asyncio.sleep(0.4)  # let incidents appear as the story unfolds
    finally:
        await producer.stop()
    return len(scenario.records)


def _subject(incident: Incident) -> str:
    return incident.principal or incident.dataset or f"{incident.model_id}:{incident.model_version}"


def _print_incident(incident: Incident, out: Printer, first: bool) -> None:
    if not first:  # later states are one line: the full story is in ClickHouse and `mlsentry incidents show`
        case = f" case={incident.case_id}" if incident.case_id else ""
        out(f"  .. {incident.status.upper():9} {incident.kind:18} {_subject(incident)}  id={incident.incident_id}{case}")
        return
    out(f"\n  >> INCIDENT {incident.severity.upper():8} {incident.kind:18} {_subject(incident)}  id={incident.incident_id}")
    for line in textwrap.wrap(incident.summary, width=100):
        out(f"     {line}")


async def run_demo(settings: Settings, out: Printer = print, fresh: bool = True) -> DemoReport:
    started = time.monotonic()
    report = DemoReport()
    data_dir = Path(settings.data_dir)
    if fresh and (data_dir / "clickhouse").exists():
        shutil.rmtree(data_dir / "clickhouse")
    data_dir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(log_path=data_dir / "tansu.log") if settings.embedded_broker else None
    bootstrap = broker.start().bootstrap_servers if broker else settings.bootstrap_servers
    out(f"[1/5] Kafka-protocol broker: {'embedded tansu at ' if broker else ''}{bootstrap}")
    try:
        await _run(settings, bootstrap, report, out)
    finally:
        if broker:
            broker.stop()
    report.elapsed_s = time.monotonic() - started
    out(f"\nDemo finished in {report.elapsed_s:.1f} s.")
    return report


async def _run(settings: Settings, bootstrap: str, report: DemoReport, out: Printer) -> None:
    client = connect_with(settings)
    ensure_schema(client, settings.clickhouse_database)
    store = IncidentStore(client, settings.clickhouse_database)
    out(f"[2/5] Incident store: {settings.resolved_clickhouse_dsn} (database {settings.clickhouse_database})")
    await ensure_topics(settings, bootstrap)
    # The last three whole hours before now, so "the last day" queries in ClickHouse find the demo's rows.
    hour_ms = 3_600_000
    start_ms = int(time.time() * 1000) // hour_ms * hour_ms - 3 * hour_ms
    scenario = simulate(SimulationConfig(start_ms=start_ms))
    out(f"[3/5] Simulated traffic: {scenario.counts} events over 3 h of event time; injected attacks:")
    for attack in scenario.attacks:
        out(f"        - {attack.kind:17} at {_iso(attack.starts_at)}  {attack.description}")

    def observe(result: BatchResult) -> None:
        for incident in result.incidents:
            first = all(seen.incident_id != incident.incident_id for seen in report.incidents)
            report.incidents.append(incident)
            _print_incident(incident, out, first)

    worker = Worker(settings, store, bootstrap, observe)
    await worker.start()
    out("[4/5] Worker started; publishing (predictions as Avro, access as JSON, data changes Confluent-framed) ...")
    try:
        report.published = await _publish(scenario, settings, bootstrap, out)
        report.malformed = len(MALFORMED)
        await _wait_for(lambda: worker.stats.events + worker.stats.dead_letters >= report.published + report.malformed, 90)
    finally:
        await worker.stop()
    report.commands = [decode_command(raw) for raw in await read_all(bootstrap, settings.topic_containment, settings=settings)]
    try:
        _summarise(scenario, report, worker, client, settings, out)
    finally:
        client.close()


async def _wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def _summarise(scenario: Scenario, report: DemoReport, worker: Worker, client: object,
               settings: Settings, out: Printer) -> None:
    stats = worker.stats
    out(f"\n[5/5] Processed {stats.events} events, {stats.dead_letters} dead letters, "
        f"{stats.incidents} incidents, {stats.commands} containment commands.")
    out("\nInjected attacks and what caught them (delay in event time):")
    for attack in scenario.attacks:
        match = next((i for i in report.incidents if i.kind == attack.kind and i.detected_at >= attack.starts_at
                      and attack.subject.split("=", 1)[1].startswith(_subject(i).split(":")[0])), None)
        report.caught[f"{attack.kind} {attack.subject}"] = None if match is None else match.detected_at - attack.starts_at
        verdict = "MISSED" if match is None else f"caught after {(match.detected_at - attack.starts_at) / 1000:.0f} s"
        out(f"  {attack.kind:17} {attack.subject:28} {verdict}")
    database = settings.clickhouse_database
    sql = (f"SELECT kind, severity, status, coalesce(principal, dataset, concat(model_id, ':', model_version)) "
           f"AS subject, detected_at, updates, case_id FROM {database}.incidents FINAL ORDER BY detected_at")
    out("\nIncidents in ClickHouse (" + sql + "):")
    out(format_table(*query(client, sql)))  # type: ignore[arg-type]
    _print_cases(report, out)
    out(f"\nContainment commands and their reverts on topic {settings.topic_containment} ({len(report.commands)}):")
    rows = [(c["command_id"], c["action"], c["target"], c["mode"], _iso(c["issued_at"]), c["revert_of"] or "")
            for c in sorted(report.commands, key=lambda c: c["issued_at"])]
    out(format_table(["command_id", "action", "target", "mode", "issued_at", "revert_of"], rows))
    out("\nInvestigate further (the worker has stopped, so the store is free):")
    out("  .venv/bin/mlsentry incidents --status resolved")
    if report.incidents:
        out(f"  .venv/bin/mlsentry incidents show {report.incidents[-1].incident_id}")
    out(f'  .venv/bin/mlsentry sql "SELECT * FROM {database}.case_timeline ORDER BY case_id, updated_at"')
    out(f'  .venv/bin/mlsentry sql "SELECT action, target, mode, outcome, reason FROM {database}.containment_log FINAL"')
    out(f'  .venv/bin/mlsentry sql "SELECT error_kind, reason, source_topic, offset FROM {database}.dead_letters FINAL"')


def _print_cases(report: DemoReport, out: Printer) -> None:
    latest = {incident.incident_id: incident for incident in report.incidents}
    cases: dict[str, list[Incident]] = {}
    for incident in latest.values():
        if incident.case_id:
            cases.setdefault(incident.case_id, []).append(incident)
    out(f"\nCases linking incidents across streams ({len(cases)}):")
    for case_id, members in cases.items():
        out(f"  case {case_id}: " + ", ".join(f"{i.kind} on {_subject(i)}" for i in members))
        story = next((part for part in members[-1].summary.split(f"Case {case_id}: ")[1:]), "")
        for line in textwrap.wrap(story.split(" Impact:")[0], width=100):
            out(f"     {line}")


def _iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
