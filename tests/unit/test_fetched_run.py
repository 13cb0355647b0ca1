"""``FetchedRun``: a partition's fetched messages as offsets and values, read as a sequence of records."""

from __future__ import annotations

from bisect import bisect_left
from operator import attrgetter

import pytest

from streams.fetched_run import FetchedRun, RawRecord

pytestmark = pytest.mark.unit

OFFSETS = [10, 11, 13, 20, 21]
VALUES: list[bytes | None] = [b"a", b"b", None, b"d", b""]


def test_it_reads_as_the_list_of_records_it_stands_for() -> None:
    run = FetchedRun(list(OFFSETS), list(VALUES))
    records = [RawRecord(offset, value) for offset, value in zip(OFFSETS, VALUES)]
    assert len(run) == 5 and list(run) == records and list(reversed(run)) == records[::-1]
    assert run[0] == records[0] and run[-1].offset == 21 and run[2].value is None
    assert run[1:4] == FetchedRun(OFFSETS[1:4], VALUES[1:4]) and list(run[::2]) == records[::2]
    assert isinstance(run[:0], FetchedRun) and len(run[:0]) == 0 and not run[:0]
    assert records[3] in run and run.index(records[3]) == 3
    with pytest.raises(IndexError):
        run[5]


def test_the_pipeline_bisects_it_by_offset() -> None:
    run = FetchedRun(list(OFFSETS), list(VALUES))
    for mark, expected in ((0, 0), (10, 0), (12, 2), (13, 2), (14, 3), (22, 5)):
        assert bisect_left(run, mark, key=attrgetter("offset")) == expected


def test_offsets_and_values_must_pair_up() -> None:
    with pytest.raises(ValueError, match="3 offsets for 2 values"):
        FetchedRun([1, 2, 3], [b"a", b"b"])
    assert FetchedRun([1], [b"x"]) != FetchedRun([1], [b"y"]) and FetchedRun([], []) != []
    assert "offsets 10..21" in repr(FetchedRun(list(OFFSETS), list(VALUES)))
