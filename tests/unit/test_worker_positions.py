"""The worker hands each partition's records to the pipeline once, in offset order."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord

from streams.worker import not_yet_handled

pytestmark = pytest.mark.unit


def _records(first: int, last: int) -> list[ConsumerRecord]:
    return [ConsumerRecord("t", 0, offset, 0, 0, None, b"x", None, 1, 1, ()) for offset in range(first, last + 1)]


def test_a_batch_that_continues_the_position_is_kept_whole():
    batch = _records(5, 9)
    assert not_yet_handled(batch, 5) is batch


def test_records_already_handed_out_are_dropped():
    """The race: a fetch begun during the take-over returns offsets 0..9 before the take-over's seek to 0;
    should the consumer read them again, the second read must not reach the pipeline."""
    assert [r.offset for r in not_yet_handled(_records(0, 9), 10)] == []
    assert [r.offset for r in not_yet_handled(_records(0, 9), 4)] == [4, 5, 6, 7, 8, 9]


def test_a_gap_after_the_position_is_not_filled_or_dropped():
    """Offsets can skip (compaction, transaction markers): a later first offset is handed on as it is."""
    assert [r.offset for r in not_yet_handled(_records(7, 8), 5)] == [7, 8]
    assert not_yet_handled([], 3) == []
