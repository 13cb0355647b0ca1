"""Investigation helpers behind `mlsentry incidents` and `mlsentry contain revert`.

Reads go through :func:`streams.store.query` (read-only, parameters bound server-side);
an operator revert reads the original command from ``containment_log``, publishes the
revert to the containment topic (keyed by target, like every command) and logs it.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from detectors.containment import ContainmentPolicy
from detectors.findings import ContainmentCommand
from streams.settings import Settings
from streams.store import IncidentStore, format_table, query

LIST_COLUMNS = ("incident_id", "kind", "severity", "status", "subject", "detected_at", "updated_at", "updates",
                "case_id")


def list_incidents(client: Any, database: str, *, kind: str | None = None, severity: str | None = None,
                   status: str | None = None, since: str | None = None, limit: int = 50,
                   as_json: bool = False) -> str:
    filters, parameters = [], {}
    for name, value in (("kind", kind), ("severity", severity), ("status", status)):
        if value:
            filters.append(f"{name} = {{{name}:String}}")
            parameters[name] = value
    if since:
        filters.append("detected_at >= {since:DateTime64(3, 'UTC')}")
        parameters["since"] = datetime.fromisoformat(since).strftime("%Y-%m-%d %H:%M:%S")
    where = f"WHERE {' AND '.join(filters)}" if filters else ""
    sql = (f"SELECT incident_id, kind, severity, status, "
           f"coalesce(principal, dataset, concat(model_id, ':', model_version)) AS subject, detected_at, updated_at, "
           f"updates, case_id FROM {database}.incidents FINAL {where} "
           f"ORDER BY indexOf(['critical', 'high', 'medium', 'low', 'info'], severity), detected_at DESC "
           f"LIMIT {int(limit)}")
    columns, rows = query(client, sql, parameters)
    if as_json:
        return "\n".join(json.dumps(dict(zip(columns, row)), default=str) for row in rows)
    return format_table(columns, rows)


def show_incident(client: Any, database: str, incident_id: str) -> str:
    """The incident's story, then its timeline, containment and evidence as readable tables."""
    params = {"id": incident_id}
    columns, rows = query(client, f"SELECT * FROM {database}.incidents FINAL WHERE incident_id = {{id:String}}", params)
    if not rows:
        return ""
    record = dict(zip(columns, rows[0]))
    header = [f"Incident {incident_id}: {record['severity']} {record['kind']} ({record['status']})",
              f"playbook {record['playbook_id']}  case {record['case_id'] or '-'}  tier {record['impact_tier']}  "
              f"owners {', '.join(record['owners']) or '-'}  affected predictions ~{record['affected_predictions']}",
              "", record["summary"], ""]
    sections = [
        ("Timeline", f"SELECT updated_at, status, severity, updates, affected_predictions, round(score, 3) AS score "
                     f"FROM {database}.incident_events FINAL WHERE incident_id = {{id:String}} ORDER BY updated_at"),
        ("Containment", f"SELECT issued_at, command_id, action, target, mode, outcome, revert_of "
                        f"FROM {database}.containment_log FINAL WHERE incident_id = {{id:String}} ORDER BY issued_at"),
        ("Evidence", f"SELECT ts, event_type, event_id, description FROM {database}.incident_evidence FINAL "
                     f"WHERE incident_id = {{id:String}} ORDER BY ts LIMIT 50"),
    ]
    body = [f"{title}:\n{format_table(*query(client, sql, params), max_width=90)}\n" for title, sql in sections]
    evidence = "\n".join(f"  {name} = {value}" for name, value in sorted(record["evidence"].items()))
    queries = "\n".join(f"  {sql}" for sql in record["investigation_queries"])
    return "\n".join(header + body + [f"Detector evidence:\n{evidence}", "", f"Investigate:\n{queries}"])


def find_command(client: Any, database: str, command_id: str) -> ContainmentCommand | None:
    sql = (f"SELECT command_id, incident_id, toUnixTimestamp64Milli(issued_at) AS issued_at, action, target_type, "
           f"target, params, mode, toUnixTimestamp64Milli(expires_at) AS expires_at, reversible, reason, revert_of "
           f"FROM {database}.containment_log FINAL WHERE command_id = {{id:String}}")
    columns, rows = query(client, sql, {"id": command_id})
    if not rows:
        return None
    record = dict(zip(columns, rows[0]))
    record["params"] = dict(record["params"])
    return ContainmentCommand(**record)


def build_operator_revert(original: ContainmentCommand, now_ms: int, reason: str, ttl_ms: int) -> ContainmentCommand:
    """The same deterministic revert the engine would issue, marked as an operator's."""
    revert = ContainmentPolicy(ttl_ms=ttl_ms).revert_for(original, now_ms, f"operator request: {reason}")
    return replace(revert, params={**revert.params, "operator": "true"})


async def operator_revert(client: Any, settings: Settings, command_id: str, reason: str) -> ContainmentCommand | None:
    from streams.codec import encode_command
    from streams.publishing import start_producer

    original = find_command(client, settings.clickhouse_database, command_id)
    if original is None:
        return None
    revert = build_operator_revert(original, int(time.time() * 1000), reason, settings.containment_ttl_s * 1000)
    producer = await start_producer(settings.bootstrap_servers, settings)
    try:
        await (await producer.send(settings.topic_containment, value=encode_command(revert),
                                   key=revert.target.encode()))
    finally:
        await producer.stop()
    store = IncidentStore(client, settings.clickhouse_database)
    store.add_command(revert)
    store.flush()
    return revert
