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


async def test_an_unreachable_broker_means_a_slower_join_not_a_failed_start(tmp_path: Path) -> None:
    """Ending the previous run's membership is best effort: any failure is logged and the worker joins anyway."""
    from streams.membership import leave_for_previous_run

    path = record_path(tmp_path)
    write_record(path, MemberRecord("g", "m-1"))
    assert await leave_for_previous_run(path, "other-group", "127.0.0.1:1", {}) is None  # not this group's record
    answer = await leave_for_previous_run(path, "g", "127.0.0.1:1", {}, timeout_s=5.0)  # nothing listens on port 1
    assert answer is not None and answer != "NoError"
    assert read_record(path) == MemberRecord("g", "m-1")  # kept: the next run tries again
