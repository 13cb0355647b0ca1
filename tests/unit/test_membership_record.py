"""The member record a worker leaves in its data directory for its next run."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.membership import MemberRecord, clear_record, read_record, record_path, write_record

pytestmark = pytest.mark.unit


def test_a_record_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    path = record_path(tmp_path / "data")
    assert read_record(path) is None
    write_record(path, MemberRecord("g", "m-1"))
    write_record(path, MemberRecord("g", "m-2"))
    assert read_record(path) == MemberRecord("g", "m-2")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left behind
    clear_record(path)
    assert read_record(path) is None
    clear_record(path)  # clearing twice is fine


@pytest.mark.parametrize("content", ["", "{", "[]", '{"group_id": "g"}', "\x00\xff"])
def test_a_damaged_record_reads_as_none(tmp_path: Path, content: str) -> None:
    path = record_path(tmp_path)
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    assert read_record(path) is None
