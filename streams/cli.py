"""The `mlsentry` command line: worker, demo, replay, simulate, publish, incidents, contain, sql, settings."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

from streams.settings import EMBEDDED, Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlsentry", description="Streaming guard for production ML systems.")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers, or 'embedded' (env MLSENTRY_BOOTSTRAP_SERVERS)")
    parser.add_argument("--clickhouse-dsn", help="chdb:///abs/dir or http://host:8123 (env MLSENTRY_CLICKHOUSE_DSN)")
    parser.add_argument("--data-dir", help="local state directory (env MLSENTRY_DATA_DIR)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run the detection worker against Kafka and ClickHouse")
    commands.add_parser("demo", help="embedded broker + chDB + worker + simulated attacks")
    replay = commands.add_parser("replay", help="run the pipeline over a JSONL file of events (no Kafka)")
    replay.add_argument("--events", required=True, type=Path)
    replay.add_argument("--incidents", required=True, type=Path)
    replay.add_argument("--commands", type=Path, help="also write containment commands as JSONL")
    replay.add_argument("--updates", type=Path, help="also write every incident state change as JSONL")
    simulate = commands.add_parser("simulate", help="write the demo's simulated traffic as replay JSONL")
    simulate.add_argument("--out", required=True, type=Path)
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--hours", type=float, default=3.0)
    publish = commands.add_parser("publish", help="send JSONL events to a topic")
    publish.add_argument("--topic", required=True)
    publish.add_argument("--type", choices=("prediction", "access", "data_change"),
                         help="event type of bare event lines (lines with {type, event} carry their own)")
    publish.add_argument("--format", choices=("json", "avro", "confluent"), default="json")
    publish.add_argument("file", type=Path)
    sql = commands.add_parser("sql", help="run a read-only SQL query on the incident store")
    sql.add_argument("query")
    sql.add_argument("--json", action="store_true", help="print rows as JSON lines")
    commands.add_parser("settings", help="print the effective settings (secrets masked)")
    incidents = commands.add_parser("incidents", help="list incidents, or show one with its timeline and evidence")
    incidents.add_argument("--kind")
    incidents.add_argument("--severity")
    incidents.add_argument("--status", choices=("open", "contained", "resolved"))
    incidents.add_argument("--since", help="ISO time, e.g. 2026-12-01T00:00:00")
    incidents.add_argument("--limit", type=int, default=50)
    incidents.add_argument("--json", action="store_true")
    incident_actions = incidents.add_subparsers(dest="incident_action")
    show = incident_actions.add_parser("show", help="one incident: story, timeline, containment, evidence")
    show.add_argument("incident_id")
    contain = commands.add_parser("contain", help="operator containment actions")
    contain_actions = contain.add_subparsers(dest="contain_action", required=True)
    revert = contain_actions.add_parser("revert", help="publish a revert of a containment command")
    revert.add_argument("command_id")
    revert.add_argument("--reason", default="operator request")
    return parser


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    return Settings.load(
        bootstrap_servers=args.bootstrap_servers, clickhouse_dsn=args.clickhouse_dsn, data_dir=args.data_dir, **extra
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {
        "worker": _worker, "demo": _demo, "replay": _replay, "simulate": _simulate,
        "publish": _publish, "sql": _sql, "settings": _show_settings,
        "incidents": _incidents, "contain": _contain,
    }[args.command]
    from streams.store import StoreBusyError, UnsafeQueryError

    try:
        return handler(args)
    except (StoreBusyError, UnsafeQueryError) as exc:
        print(f"mlsentry {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> int:
    from streams.broker import EmbeddedBroker
    from streams.store import IncidentStore, connect_with, ensure_schema
    from streams.topics import ensure_topics
    from streams.host import build_host
    from streams.worker import Worker

    broker = EmbeddedBroker().start() if settings.embedded_broker else None
    bootstrap = broker.bootstrap_servers if broker else settings.bootstrap_servers
    client = connect_with(settings)
    ensure_schema(client, settings.clickhouse_database)
    await ensure_topics(settings, bootstrap)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    logging.getLogger("mlsentry").info("worker consuming %s from %s", list(settings.input_topics), bootstrap)
    worker = Worker(settings, IncidentStore(client, settings.clickhouse_database), bootstrap)
    host = build_host(settings, worker)
    try:
        # The worker first: the Faust app's own group join (the acks agent) takes seconds, more after a crash
        # while the coordinator waits out the dead member, and detection need not wait for it.
        await worker.start()
        await host.start()  # the acks agent and /health; it stops the worker as one of its services
        if settings.web_port:
            logging.getLogger("mlsentry").info("health and stats on http://%s:%d/health, /stats",
                                               settings.web_host, settings.web_port)
        await stop.wait()
    finally:
        await host.stop()
        if worker.running:  # the host failed before its services started, so it did not stop the worker
            await worker.stop()
        client.close()
        if broker:
            broker.stop()
    stats = worker.stats
    print(json.dumps({"events": stats.events, "incidents": stats.incidents, "dead_letters": stats.dead_letters}))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streams.demo import run_demo

    settings = _settings(args)
    if args.bootstrap_servers is None and "MLSENTRY_BOOTSTRAP_SERVERS" not in __import__("os").environ:
        settings = settings.replace(bootstrap_servers=EMBEDDED)
    if settings.embedded_broker:
        settings = settings.replace(session_timeout_s=2.0, group_id="mlsentry-demo")
    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(run_demo(settings))
    missed = [kind for kind, delay in report.caught.items() if delay is None]
    if missed:
        print(f"Missed attacks: {missed}", file=sys.stderr)
        return 1
    return 0


def _replay(args: argparse.Namespace) -> int:
    from streams.pipeline import engine_from_settings
    from streams.replay import replay_file
    from streams.runtime import tune_garbage_collector

    settings = _settings(args)
    tune_garbage_collector(settings.gc_young_threshold)
    engine = engine_from_settings(settings)
    started = time.perf_counter()
    report = replay_file(args.events, args.incidents, engine, args.commands, args.updates)
    seconds = time.perf_counter() - started  # reading, detecting and writing; not the interpreter's start-up
    for dead in report.dead_letters[:20]:
        print(f"dead letter: line {dead['line']}: {dead['reason']}", file=sys.stderr)
    print(json.dumps({"lines": report.lines, "events": report.events, "incidents": report.incidents,
                      "commands": report.commands, "dead_letters": len(report.dead_letters),
                      "seconds": round(seconds, 3), "events_per_s": round(report.events / max(seconds, 1e-9))}),
          file=sys.stderr)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from streams.simulator import SimulationConfig, simulate

    scenario = simulate(SimulationConfig(seed=args.seed, duration_s=int(args.hours * 3600)))
    with args.out.open("w", encoding="utf-8") as handle:
        for record in scenario.records:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    for attack in scenario.attacks:
        print(json.dumps(attack.__dict__), file=sys.stderr)
    return 0


def _publish(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.embedded_broker:
        print("publish needs a running broker: pass --bootstrap-servers host:port", file=sys.stderr)
        return 2
    records = list(_publish_records(args.file, args.type))
    return asyncio.run(_publish_async(settings, args.topic, records, args.format))


def _publish_records(path: Path, default_type: str | None) -> list[tuple[str, dict]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            item = json.loads(line)
            if "type" in item and "event" in item:
                records.append((item["type"], item["event"]))
            elif default_type:
                records.append((default_type, item))
            else:
                raise SystemExit(f"line {line_number}: bare event needs --type")
    return records


async def _publish_async(settings: Settings, topic: str, records: list[tuple[str, dict]], wire_format: str) -> int:
    from streams.publishing import publish_records, start_producer

    producer = await start_producer(settings.bootstrap_servers, settings)
    try:
        sent = await publish_records(producer, topic, records, wire_format)
    finally:
        await producer.stop()
    print(json.dumps({"topic": topic, "sent": sent, "format": wire_format}))
    return 0


def _sql(args: argparse.Namespace) -> int:
    from streams.store import connect_with, format_table, query

    settings = _settings(args)
    client = connect_with(settings)
    try:
        columns, rows = query(client, args.query)
    finally:
        client.close()
    if args.json:
        for row in rows:
            print(json.dumps(dict(zip(columns, row)), default=str))
    else:
        print(format_table(columns, rows))
    return 0


def _client(settings: Settings) -> object:
    from streams.store import connect_with

    return connect_with(settings)


def _incidents(args: argparse.Namespace) -> int:
    from streams.investigate import list_incidents, show_incident

    settings = _settings(args)
    client = _client(settings)
    try:
        if args.incident_action == "show":
            text = show_incident(client, settings.clickhouse_database, args.incident_id)
        else:
            text = list_incidents(client, settings.clickhouse_database, kind=args.kind, severity=args.severity,
                                  status=args.status, since=args.since, limit=args.limit, as_json=args.json)
    finally:
        client.close()  # type: ignore[attr-defined]
    print(text)
    return 0 if text else 1


def _contain(args: argparse.Namespace) -> int:
    from streams.investigate import operator_revert

    settings = _settings(args)
    if settings.embedded_broker:
        print("contain revert needs a running broker: pass --bootstrap-servers host:port", file=sys.stderr)
        return 2
    client = _client(settings)
    try:
        revert = asyncio.run(operator_revert(client, settings, args.command_id, args.reason))
    finally:
        client.close()  # type: ignore[attr-defined]
    if revert is None:
        print(f"no command {args.command_id!r} in {settings.clickhouse_database}.containment_log", file=sys.stderr)
        return 1
    print(json.dumps(revert.to_record(), sort_keys=True))
    return 0


def _show_settings(args: argparse.Namespace) -> int:
    print(json.dumps(_settings(args).describe(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
