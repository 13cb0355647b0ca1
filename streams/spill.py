"""A bounded, disk-spilled buffer in front of the incident store, for store outages.

The worker hands each batch's outputs to :class:`SpillingSink` and gets back a sequence
number. While the store works, ``write_batch`` writes straight through and the batch is
durable at once. When a write fails, the batch is written to a segment file in the spill
directory (written to a temporary name, fsynced, renamed) and the sink retries the store
with exponential backoff (0.2 s doubling up to ``retry_max_s``), oldest segment first;
later batches queue behind it on disk, so their order is kept. ``durable_seq`` is the
highest sequence number up to which everything is in the store: the worker commits Kafka
offsets only up to batches at or below it, and keeps publishing containment commands
meanwhile (they go to Kafka, not to the store). When the spill holds ``max_bytes`` or
more, ``full`` turns true and the worker stops consuming until it drains.

Contract with the inner sink (``IncidentStore`` honours it): rows it failed to write stay
buffered inside it and are written by the next ``flush()``; so a segment is handed to it
once and a retry only calls ``flush()`` again (no duplicate rows). Segments left by a
process that died are drained first on the next start (harmless duplicates at worst:
their offsets were never committed, so the same outputs are produced again and incidents
and commands collapse by id).

Segment files are JSON lines of the public records, never pickles.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from detectors.findings import ContainmentCommand, Incident
from detectors.incidents import EvidenceRow
from streams.pipeline import OutputSink

log = logging.getLogger("mlsentry.spill")


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int
    handed: bool = False


@dataclass
class _Outputs:
    incidents: list[Incident] = field(default_factory=list)
    commands: list[ContainmentCommand] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[EvidenceRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.incidents) + len(self.commands) + len(self.dead_letters) + len(self.evidence)


def incident_from_record(record: dict[str, Any]) -> Incident:
    names = {spec.name for spec in fields(Incident)}
    values = {name: value for name, value in record.items() if name in names}
    values["recommended_actions"] = tuple(values.get("recommended_actions") or ())
    return Incident(**values)


def _encode(outputs: _Outputs) -> bytes:
    lines = [json.dumps({"incident": i.to_record()}) for i in outputs.incidents]
    lines += [json.dumps({"command": c.to_record()}) for c in outputs.commands]
    for record in outputs.dead_letters:
        lines.append(json.dumps({"dead_letter": {**record, "raw": base64.b64encode(bytes(record["raw"])).decode()}}))
    lines += [json.dumps({"evidence": row.to_record()}) for row in outputs.evidence]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _decode(data: bytes) -> _Outputs:
    outputs = _Outputs()
    for line in data.decode().splitlines():
        if not line:
            continue
        item = json.loads(line)
        if "incident" in item:
            outputs.incidents.append(incident_from_record(item["incident"]))
        elif "command" in item:
            names = {spec.name for spec in fields(ContainmentCommand)}
            outputs.commands.append(ContainmentCommand(**{k: v for k, v in item["command"].items() if k in names}))
        elif "evidence" in item:
            outputs.evidence.append(EvidenceRow(**item["evidence"]))
        else:
            record = item["dead_letter"]
            outputs.dead_letters.append({**record, "raw": base64.b64decode(record["raw"])})
    return outputs


class SpillingSink:
    """``OutputSink`` facade whose ``write_batch`` never raises because the store is down."""

    def __init__(self, inner: OutputSink, directory: str | Path, max_bytes: int = 256 << 20,
                 retry_max_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.retry_max_s = retry_max_s
        self.clock = clock
        self._current = _Outputs()
        self._backlog: deque[_Segment] = deque()
        self._seq = 0
        self.durable_seq = 0
        self.failures = 0
        self._delay = 0.2
        self._next_attempt = 0.0
        self._adopt_leftovers()

    # -- OutputSink: the worker delivers a batch here, then calls write_batch()
    def add_incident(self, incident: Incident) -> None:
        self._current.incidents.append(incident)

    def add_command(self, command: ContainmentCommand) -> None:
        self._current.commands.append(command)

    def add_dead_letter(self, record: dict) -> None:
        self._current.dead_letters.append(record)

    def add_evidence(self, row: EvidenceRow) -> None:
        self._current.evidence.append(row)

    def flush(self) -> int:
        """``OutputSink.flush``: write the delivered outputs (spilling on failure); rows accepted."""
        count = len(self._current)
        self.write_batch()
        return count

    @property
    def backlog_bytes(self) -> int:
        return sum(segment.size for segment in self._backlog)

    @property
    def backlog_segments(self) -> int:
        return len(self._backlog)

    @property
    def full(self) -> bool:
        return self.backlog_bytes >= self.max_bytes

    def write_batch(self) -> int:
        """Make the delivered outputs one batch; its sequence number (durable when <= ``durable_seq``)."""
        outputs, self._current = self._current, _Outputs()
        self._seq += 1
        if not self._backlog:
            if self._write_through(outputs):
                self.durable_seq = self._seq
                return self._seq
            self._spill(self._seq, outputs, handed=True)
        else:
            self._spill(self._seq, outputs, handed=False)
            self.drain()
        return self._seq

    def drain(self, force: bool = False) -> bool:
        """Retry the store for spilled segments, oldest first (respecting backoff unless ``force``)."""
        if self._backlog and not force and self.clock() < self._next_attempt:
            return False
        while self._backlog:
            segment = self._backlog[0]
            if not self._retry(segment):
                return False
            self._backlog.popleft()
            segment.path.unlink(missing_ok=True)
            self.durable_seq = max(self.durable_seq, segment.seq)
            log.info("spilled batch %d written to the store (%d left)", segment.seq, len(self._backlog))
        self.durable_seq = self._seq
        return True

    def _retry(self, segment: _Segment) -> bool:
        try:
            if not segment.handed:
                segment.handed = True
                self._hand(_decode(segment.path.read_bytes()))
            self.inner.flush()
        except Exception as exc:
            self.failures += 1
            self._next_attempt = self.clock() + self._delay
            log.warning("incident store still failing (%s); %d segments spilled, retry in %.1fs",
                        exc, len(self._backlog), self._delay)
            self._delay = min(self._delay * 2, self.retry_max_s)
            return False
        self._delay = 0.2
        return True

    def _write_through(self, outputs: _Outputs) -> bool:
        try:
            self._hand(outputs)
            self.inner.flush()
            return True
        except Exception as exc:
            self.failures += 1
            self._next_attempt = self.clock() + self._delay
            log.warning("incident store write failed (%s); spilling to %s", exc, self.directory)
            self._delay = min(self._delay * 2, self.retry_max_s)
            return False

    def _hand(self, outputs: _Outputs) -> None:
        """Give rows to the inner sink; an add that fails (store auto-flush) has already kept its row."""
        failed: Exception | None = None
        adds = ([(self.inner.add_incident, i) for i in outputs.incidents]
                + [(self.inner.add_command, c) for c in outputs.commands]
                + [(self.inner.add_dead_letter, d) for d in outputs.dead_letters])
        add_evidence = getattr(self.inner, "add_evidence", None)
        if add_evidence is not None:
            adds += [(add_evidence, row) for row in outputs.evidence]
        for add, item in adds:
            try:
                add(item)  # type: ignore[operator]
            except Exception as exc:
                failed = exc
        if failed is not None:
            raise failed

    def _spill(self, seq: int, outputs: _Outputs, handed: bool) -> None:
        data = _encode(outputs)
        path = self.directory / f"segment-{time.time_ns():020d}-{seq:012d}.jsonl"
        temporary = path.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_dir(self.directory)
        self._backlog.append(_Segment(seq, path, len(data), handed))

    def _adopt_leftovers(self) -> None:
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)  # never renamed: its batch was not acknowledged to anyone
        for path in sorted(self.directory.glob("segment-*.jsonl")):
            self._seq += 1
            self._backlog.append(_Segment(self._seq, path, path.stat().st_size))
        if self._backlog:
            log.warning("found %d spilled segments from an earlier run; draining them first", len(self._backlog))
            self.drain(force=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
