"""`mlsentry replay`: the detection pipeline over a JSONL file of events, no Kafka.

Input lines are ``{"type": "prediction"|"access"|"data_change", "event": {...}}`` in
event-time order; output is one incident JSON object per line with the Incident
contract's fields: one line per incident id, in order of first detection, carrying the
incident's final state (an incident that was updated or resolved during the replay is
written once, as it ended). ``--updates`` writes every intermediate state as well. The same file always gives the same output (deterministic ids,
sorted keys). Lines that fail to parse or validate are reported as dead letters and
skipped; every valid line around them is processed.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from detectors.engine import Engine, EngineOutput
from detectors.events import EVENT_TYPES, Event
from streams.codec import DecodeError, event_from_record, loads_json, read_wrapped_line

MAX_LINE_BYTES = 1 << 20
#: Events handed to the engine at once: detectors with a micro-batch path amortise over these.
REPLAY_BATCH = 1_024


@dataclass
class ReplayReport:
    lines: int = 0
    events: int = 0
    incidents: int = 0
    updates: int = 0
    commands: int = 0
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


def parse_line(line: str) -> Event:
    """One replay line -> event; raises ``ValueError`` with a readable reason."""
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        wrapper = loads_json(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from exc
    if type(wrapper) is not dict or "type" not in wrapper or "event" not in wrapper:
        raise ValueError('expected an object {"type": ..., "event": {...}}')
    event_type, record = wrapper["type"], wrapper["event"]
    if type(event_type) is not str or event_type not in EVENT_TYPES:
        raise ValueError(f"unknown type {event_type!r}; expected one of {sorted(EVENT_TYPES)}")
    if type(record) is not dict:
        raise ValueError("'event' must be a JSON object")
    try:
        return event_from_record(event_type, record)
    except DecodeError as exc:
        raise ValueError(str(exc)) from exc


def iter_events(lines: Iterable[str], report: ReplayReport) -> Iterator[Event]:
    """Parse lines, recording bad ones in ``report.dead_letters`` instead of stopping."""
    for line_number, line in enumerate(lines, start=1):
        if not line or line.isspace():  # isspace, unlike strip, copies nothing
            continue
        report.lines += 1
        event = read_wrapped_line(line) if len(line) <= MAX_LINE_BYTES else None  # the common case, compiled
        if event is None:
            try:
                event = parse_line(line)
            except ValueError as exc:
                report.dead_letters.append({"line": line_number, "reason": str(exc), "raw": line[:200]})
                continue
        report.events += 1
        yield event


def replay(lines: Iterable[str], engine: Engine, incidents_out: IO[str],
           commands_out: IO[str] | None = None, updates_out: IO[str] | None = None) -> ReplayReport:
    """Feed ``lines`` through ``engine``; write incidents (and optionally commands, updates) as JSONL."""
    report = ReplayReport()
    latest: dict[str, dict[str, Any]] = {}  # insertion order = order of first detection
    batch: list[Event] = []
    for event in iter_events(lines, report):
        batch.append(event)
        if len(batch) >= REPLAY_BATCH:
            _collect(engine.process_batch(batch), latest, commands_out, updates_out, report)
            batch = []
    if batch:
        _collect(engine.process_batch(batch), latest, commands_out, updates_out, report)
    for record in latest.values():
        incidents_out.write(json.dumps(record, sort_keys=True) + "\n")
    report.incidents = len(latest)
    return report


def _collect(output: EngineOutput, latest: dict[str, dict[str, Any]], commands_out: IO[str] | None,
             updates_out: IO[str] | None, report: ReplayReport) -> None:
    for incident in output.incidents:
        record = incident.to_record()
        latest[incident.incident_id] = record
        report.updates += 1
        if updates_out is not None:
            updates_out.write(json.dumps(record, sort_keys=True) + "\n")
    for command in output.commands:
        report.commands += 1
        if commands_out is not None:
            commands_out.write(json.dumps(command.to_record(), sort_keys=True) + "\n")


def replay_file(events_path: Path, incidents_path: Path, engine: Engine,
                commands_path: Path | None = None, updates_path: Path | None = None) -> ReplayReport:
    with contextlib.ExitStack() as stack:
        events_in = stack.enter_context(events_path.open(encoding="utf-8", errors="replace"))
        incidents_out = stack.enter_context(incidents_path.open("w", encoding="utf-8"))
        commands_out = stack.enter_context(commands_path.open("w", encoding="utf-8")) if commands_path else None
        updates_out = stack.enter_context(updates_path.open("w", encoding="utf-8")) if updates_path else None
        return replay(events_in, engine, incidents_out, commands_out, updates_out)
