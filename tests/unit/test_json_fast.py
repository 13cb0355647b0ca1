"""``codec.loads_json`` (orjson where it can) always gives what ``json.loads`` gives, or json's error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.codec import loads_json

pytestmark = pytest.mark.unit


def _outcome(load: Any, text: str) -> str:
    try:
        return repr(load(text))  # repr: nan == nan, and 1 != 1.0
    except (ValueError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(min_value=-(1 << 70), max_value=1 << 70) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=500)
@given(json_values, st.sampled_from([None, 0, 2]), st.booleans())
def test_json_documents_read_as_json_reads_them(value: Any, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)  # NaN, Infinity and huge ints included
    assert _outcome(loads_json, text) == _outcome(json.loads, text)


@settings(max_examples=500)
@given(json_values, st.data())
def test_damaged_documents_fail_or_read_as_json_reads_them(value: Any, data: st.DataObject) -> None:
    text = json.dumps(value)
    position = data.draw(st.integers(min_value=0, max_value=len(text)))
    junk = data.draw(st.text(alphabet='{}[]",:0123456789.eE+-\\ \t\nnulltrueNaInfy\ud800\x00', max_size=4))
    cut = data.draw(st.integers(min_value=0, max_value=2))
    damaged = text[:position] + junk + text[position + cut:]
    assert _outcome(loads_json, damaged) == _outcome(json.loads, damaged)


@pytest.mark.parametrize("text", [
    "NaN", "-Infinity", '{"a": Infinity}', "1e400", "-1e400", "18446744073709551616", "-9223372036854775809",
    "9223372036854775807", "123456789012345678901234567890", '"\\ud800"', '{"a": 1, "a": 2}', "[1,]", "01",
    '"a\tb"', "\ufeff{}", " {} ", "[" * 3000 + "]" * 3000, '{"ts": 1796083200000, "score": 0.12708}',
])
def test_edge_cases_read_as_json_reads_them(text: str) -> None:
    assert _outcome(loads_json, text) == _outcome(json.loads, text)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("text, expected", [
    ("1234567890123456789", True), ("123456789012345678", False), ('{"a": 123456789012345678, "b": 1}', False),
    ("é1234567890123456789", True), ("\U0001f6001234567890123456789x", True), ("١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩", False),
    ("", False),
])
def test_long_digit_runs_are_found(text: str, expected: bool, compiled: bool) -> None:
    from streams import codec

    saved = codec._avrofast
    codec._avrofast = saved if compiled else None
    try:
        assert codec._has_long_digit_run(text) is expected
    finally:
        codec._avrofast = saved


@given(st.text(alphabet="0123456789 a.é\u20ac", max_size=120), st.integers(min_value=1, max_value=25))
@settings(max_examples=2_000)
def test_the_compiled_digit_run_scan_agrees_with_a_regex(text: str, digits: int) -> None:
    """The compiled scan skips ahead a window at a time on one-byte text: it must still find every run."""
    import re

    from streams import codec

    assert codec._avrofast is not None
    expected = re.search(f"[0-9]{{{digits}}}", text) is not None
    assert codec._avrofast.has_long_digit_run(text, digits) is expected
