"""Replay input lines: every bad line is a dead letter with a reason; the good lines around it are kept."""

from __future__ import annotations

import json

import pytest

from streams.replay import ReplayReport, iter_events, parse_line

pytestmark = pytest.mark.unit

GOOD = json.dumps({"type": "access", "event": {"event_id": "e1", "ts": 5, "principal": "p", "action": "read",
                                                "resource_type": "model", "resource": "m"}})


@pytest.mark.parametrize("line, reason", [
    ('{"type": ["access"], "event": {}}', "unknown type ['access']"),
    ('{"type": {"a": 1}, "event": {}}', "unknown type {'a': 1}"),
    ('{"type": "nope", "event": {}}', "unknown type 'nope'"),
    ('{"type": "access", "event": [1]}', "'event' must be a JSON object"),
    ('{"type": "access"}', 'expected an object {"type": ..., "event": {...}}'),
    ("[1, 2]", 'expected an object {"type": ..., "event": {...}}'),
    ("{", "not valid JSON"),
    ('{"type": "access", "event": {"ts": 5}}', "missing required field 'event_id'"),
])
def test_bad_lines_are_dead_letters_with_a_reason(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("{", r"\{").replace("(", r"\(")):
        parse_line(line)
    report = ReplayReport()
    events = list(iter_events([GOOD, line, "   ", GOOD], report))
    assert [event.event_id for event in events] == ["e1", "e1"]
    assert report.lines == 3 and report.events == 2
    assert [letter["line"] for letter in report.dead_letters] == [2] and reason in report.dead_letters[0]["reason"]
