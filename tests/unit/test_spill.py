"""The spill: store outages cost memory on disk, never outputs, and the backlog drains in order."""

from __future__ import annotations

import pytest

from detectors.findings import ContainmentCommand, Incident
from streams.pipeline import ListSink
from streams.spill import SpillingSink

pytestmark = pytest.mark.unit


class FlakySink(ListSink):
    """A ListSink whose flush fails while ``down``; like IncidentStore it keeps rows it failed to write."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self._buffer: list[object] = []
        self.attempts = 0

    def add_incident(self, incident):
        self._buffer.append(incident)

    def add_command(self, command):
        self._buffer.append(command)

    def add_dead_letter(self, record):
        self._buffer.append(record)

    def flush(self) -> int:
        self.attempts += 1
        if self.down:
            raise ConnectionError("store down")
        for item in self._buffer:
            target = (self.incidents if isinstance(item, Incident) else
                      self.commands if isinstance(item, ContainmentCommand) else self.dead_letters)
            target.append(item)
        written, self._buffer = len(self._buffer), []
        return written


def _incident(n: int) -> Incident:
    return Incident(f"i{n}", "download_burst", "high", n, n, n, "download_burst", 1.0, 0.5, "s", principal=f"p{n}",
                    recommended_actions=("throttle",))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_outage_spills_to_disk_keeps_order_and_drains_without_duplicates(tmp_path):
    inner, clock = FlakySink(), Clock()
    spill = SpillingSink(inner, tmp_path, max_bytes=10_000_000, clock=clock)
    spill.add_incident(_incident(0))
    assert spill.write_batch() == 1 and spill.durable_seq == 1
    inner.down = True
    for n in range(1, 6):
        spill.add_incident(_incident(n))
        spill.add_dead_letter({"source_topic": "t", "partition": 0, "offset": n, "received_at": 0, "reason": "r",
                               "error_kind": "malformed", "raw": b"\xff" * n, "event_type": None})
        seq = spill.write_batch()
        clock.now += 0.01  # inside the backoff: no retry storm
    assert seq == 6 and spill.durable_seq == 1
    assert len(list(tmp_path.glob("segment-*.jsonl"))) == 5 and spill.backlog_bytes > 0
    assert inner.attempts <= 3, "retries back off"
    inner.down = False
    clock.now += 60
    assert spill.drain()
    assert spill.durable_seq == 6 and not list(tmp_path.glob("segment-*"))
    assert [i.incident_id for i in inner.incidents] == [f"i{n}" for n in range(6)]
    assert [d["raw"] for d in inner.dead_letters] == [b"\xff" * n for n in range(1, 6)]
    assert inner.incidents[3].recommended_actions == ("throttle",)


def test_full_spill_is_reported_so_the_worker_stops_consuming(tmp_path):
    inner = FlakySink()
    inner.down = True
    spill = SpillingSink(inner, tmp_path, max_bytes=2_000)
    while not spill.full:
        spill.add_incident(_incident(1))
        spill.write_batch()
    assert spill.backlog_bytes >= 2_000


def test_segments_left_by_a_dead_process_are_drained_on_start(tmp_path):
    inner = FlakySink()
    inner.down = True
    spill = SpillingSink(inner, tmp_path)
    spill.add_incident(_incident(7))
    spill.write_batch()
    del spill  # the process "dies" with one segment on disk
    fresh = FlakySink()
    SpillingSink(fresh, tmp_path)
    assert [i.incident_id for i in fresh.incidents] == ["i7"]
