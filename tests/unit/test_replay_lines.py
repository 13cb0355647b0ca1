"""Replay input lines: every bad line is a dead letter with a reason; the good lines around it are kept."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.events import event_type_name
from streams.codec import event_to_record, read_wrapped_line
from streams.replay import ReplayReport, iter_events, parse_line
from tests.unit.test_codec import events

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


_HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
    st.text(max_size=300), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.one_of(st.floats(allow_nan=False), st.text(max_size=5), st.integers()),
                    max_size=4),
)


@given(events, st.data())
@settings(max_examples=500)
def test_the_compiled_line_reader_gives_what_parse_line_gives(event: Any, data: st.DataObject) -> None:
    """``iter_events`` tries ``read_wrapped_line`` first: it may decline any line, but what it
    accepts must be exactly ``parse_line``'s event, and a plain valid line must be accepted."""
    record = event_to_record(event)
    damaged = data.draw(st.booleans())
    if damaged:
        record[data.draw(st.sampled_from(sorted(record)))] = data.draw(_HOSTILE_VALUES)
    wrapper: dict[str, Any] = {"type": event_type_name(event), "event": record}
    if data.draw(st.booleans()):
        wrapper["type"] = data.draw(st.one_of(st.sampled_from(["prediction", "access", "data_change", "x"]),
                                              _HOSTILE_VALUES))
    line = json.dumps(wrapper)
    try:
        precise = parse_line(line)
    except ValueError:
        precise = None
    compiled = read_wrapped_line(line)
    if compiled is not None:
        assert precise is not None and type(compiled) is type(precise) and compiled == precise
    plain = not damaged and wrapper["type"] == event_type_name(event) and not re.search("[0-9]{19}", line)
    if plain and event_type_name(event) != "data_change":  # data changes carry an array: the precise path's
        assert compiled is not None
