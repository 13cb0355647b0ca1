"""``streams.fetch`` over aiokafka's own record objects, where a broker cannot be made to misbehave.

Real ``MemoryRecords``/``PartitionRecords``/``FetchResult`` over record batches built with aiokafka's
builder; a stand-in for the fetcher's bookkeeping (its buffered results, a partition's position, the
background fetch that refetches from that position). A batch that cannot be read must be raised
again and again, never stepped over (``getmany`` gets stuck on it loudly; losing it would be silent),
and what other partitions read before the error is handed out first.
"""

from __future__ import annotations

import asyncio
import struct
from collections import OrderedDict
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from streams.fetch import _fetched, _take

pytestmark = pytest.mark.unit

GOOD, BAD = TopicPartition("t", 1), TopicPartition("t", 0)


def _batch(offsets: list[int], corrupt: bool = False) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for offset in offsets:
        builder.append(offset, timestamp=0, key=None, value=b"v%d" % offset, headers=[])
    raw = bytearray(builder.build())
    if corrupt:
        raw[-1] ^= 0xFF  # the last value's last byte: the CRC no longer matches
    return bytes(raw)


class _Position:
    """A partition's ``TopicPartitionState`` as ``FetchResult`` uses it."""

    paused = False

    def __init__(self) -> None:
        self.position = 0

    def consumed_to(self, position: int) -> None:
        self.position = position


class _Fetcher:
    """The fetcher's bookkeeping: buffered results, and a background fetch from each partition's position."""

    def __init__(self, logs: dict[TopicPartition, list[bytes]]) -> None:
        self.logs = logs
        self.positions = {tp: _Position() for tp in logs}
        self.assignment = SimpleNamespace(active=True, state_value=self.positions.__getitem__)
        self._records: OrderedDict = OrderedDict()
        self._wait_consume_future = None
        self._subscriptions = SimpleNamespace(reassignment_in_progress=False)
        self.fetches = 0

    def _notify(self, future: object) -> None:
        pass

    def fetch(self) -> None:
        for tp, batches in self.logs.items():
            position = self.positions[tp].position
            data = b"".join(batch for batch in batches if _last_offset(batch) >= position)
            if tp not in self._records and data:
                self.fetches += 1
                records = PartitionRecords(tp, MemoryRecords(data), None, position, None, None, True, READ_UNCOMMITTED)
                self._records[tp] = FetchResult(tp, assignment=self.assignment, partition_records=records, backoff=0)


def _last_offset(batch: bytes) -> int:
    base, = struct.unpack_from(">q", batch, 0)
    delta, = struct.unpack_from(">i", batch, 23)
    return base + delta


def test_a_batch_that_fails_its_check_is_raised_every_time_and_never_stepped_over() -> None:
    fetcher = _Fetcher({BAD: [_batch([0, 1, 2], corrupt=True), _batch([3, 4, 5])],
                        GOOD: [_batch([0, 1, 2]), _batch([3, 4, 5])]})
    got: dict[TopicPartition, list[int]] = {BAD: [], GOOD: []}
    errors = 0
    for _ in range(6):
        fetcher.fetch()
        try:
            for tp, run in asyncio.run(_fetched(fetcher, 0, 100)).items():
                got[tp] += run.offsets
        except CorruptRecordException:
            errors += 1
    assert got == {BAD: [], GOOD: [0, 1, 2, 3, 4, 5]}, "nothing of the bad partition past its bad batch"
    assert fetcher.positions[BAD].position == 0 and errors >= 4 and fetcher.fetches >= 5


def test_what_other_partitions_read_before_the_error_is_handed_out_first() -> None:
    fetcher = _Fetcher({GOOD: [_batch([0, 1])], BAD: [_batch([0, 1], corrupt=True)]})
    fetcher.fetch()  # GOOD's result comes first in the fetcher's order
    first = asyncio.run(_fetched(fetcher, 0, 100))
    assert {tp: run.offsets for tp, run in first.items()} == {GOOD: [0, 1]}
    assert fetcher.positions[GOOD].position == 2
    with pytest.raises(CorruptRecordException):
        asyncio.run(_fetched(fetcher, 0, 100))
    assert BAD not in fetcher._records, "fetched again from its position"


def test_messages_repeated_or_going_back_inside_a_batch_are_handed_out_once_as_getall_does() -> None:
    data = _batch([0, 1, 1, 0, 2]) + _batch([1, 2, 3])
    taken = []
    for read in ("getall", "take"):
        positions = _Fetcher({BAD: []})
        records = PartitionRecords(BAD, MemoryRecords(data), None, 0, None, None, True, READ_UNCOMMITTED)
        result = FetchResult(BAD, assignment=positions.assignment, partition_records=records, backoff=0)
        run = result.getall(100) if read == "getall" else _take(result, 100)
        taken.append(([(record.offset, record.value) for record in run], positions.positions[BAD].position))
    assert taken[0] == taken[1] == ([(0, b"v0"), (1, b"v1"), (2, b"v2"), (3, b"v3")], 4)
