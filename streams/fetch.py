"""Whole fetches off aiokafka's fetcher as two lists, offsets and values: no record object per message.

aiokafka's ``getmany`` builds a ``ConsumerRecord`` (a dataclass of eleven fields, through a
generator, with the key, sizes and headers) for every message, and the worker keeps a batch's
records alive until it is handled: about 1.0-1.4 µs per message on this machine, as much as the
transport ceiling's whole drain and about a sixth of the worker's time per event. ``fetch_runs``
does what ``getmany`` does (wait up to ``timeout_ms`` for the background fetcher, hand out what
it holds, move each partition's position on, wake the fetcher for more) but walks each fetched
partition's record batches itself, with aiokafka's own compiled batch readers (CRC check,
decompression, legacy formats), keeping only each message's offset and value.

It reads aiokafka's fetcher internals (``Fetcher._records``, ``FetchResult``, ``PartitionRecords``)
as they are in the pinned aiokafka 0.14: ``reads_whole_fetches`` checks the version, that they are
there, that no deserializer is set and that the consumer reads uncommitted (read_committed needs
aiokafka's aborted-transaction filtering), and the worker uses ``getmany`` otherwise or when
``MLSENTRY_FETCH_WHOLE_BATCHES`` is off. ``tests/integration/test_fetch.py`` compares the two readers message by message on a broker.

A record batch that cannot be read (its CRC, a codec not installed) raises as it does in ``getmany``,
after what other partitions read is handed out, and the partition is fetched again from its unchanged
position: the consumer sticks at the batch, loudly, rather than stepping over it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import aiokafka
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, FetchError, FetchResult, PartitionRecords
from aiokafka.errors import ConsumerStoppedError, CorruptRecordException

from streams.fetched_run import FetchedRun

#: aiokafka versions whose fetcher ``fetch_runs`` was checked against (tests/integration/test_fetch.py).
CHECKED_VERSIONS = ("0.14.0",)
#: ``PartitionRecords``' parameters as ``_take`` reads them (a changed signature means a changed reader).
_PARTITION_RECORDS_PARAMETERS = ("self", "tp", "records", "aborted_transactions", "fetch_offset", "key_deserializer",
                                 "value_deserializer", "check_crcs", "isolation_level")
_FETCHER_ATTRIBUTES = ("_records", "_subscriptions", "_notify", "_create_fetch_waiter", "_closed", "_isolation_level",
                       "_wait_consume_future")
_RESULT_ATTRIBUTES = ("check_assignment", "has_more", "_update_position")


def reads_whole_fetches(consumer: AIOKafkaConsumer) -> bool:
    """Whether ``fetch_runs`` can read this started consumer's fetches: an aiokafka version it was checked
    against, whose fetcher has what it reads, no deserializers, reading uncommitted (see the module's note)."""
    fetcher = getattr(consumer, "_fetcher", None)
    return (aiokafka.__version__ in CHECKED_VERSIONS
            and fetcher is not None
            and all(hasattr(fetcher, name) for name in _FETCHER_ATTRIBUTES)
            and isinstance(fetcher._records, dict)
            and fetcher._isolation_level == READ_UNCOMMITTED
            and getattr(fetcher, "_key_deserializer", None) is None  # getmany would hand out deserialized values
            and getattr(fetcher, "_value_deserializer", None) is None
            and tuple(inspect.signature(PartitionRecords.__init__).parameters) == _PARTITION_RECORDS_PARAMETERS
            and all(hasattr(FetchResult, name) for name in _RESULT_ATTRIBUTES)
            and all(hasattr(consumer, name) for name in ("_closed", "_coordinator", "_subscription")))


async def fetch_runs(consumer: AIOKafkaConsumer, timeout_ms: int,
                     max_records: int) -> dict[TopicPartition, FetchedRun]:
    """``consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)`` with each partition's
    messages as a ``FetchedRun``. Record batches are read whole, so a partition's run may go past
    ``max_records`` by the rest of one batch."""
    if max_records < 1:
        raise ValueError("max_records must be positive")
    if consumer._closed:  # as getmany
        raise ConsumerStoppedError()
    consumer._coordinator.check_errors()
    with consumer._subscription.fetch_context():
        return await _fetched(consumer._fetcher, timeout_ms / 1000, max_records)


async def _fetched(fetcher: Any, timeout: float, max_records: int) -> dict[TopicPartition, FetchedRun]:
    """``Fetcher.fetched_records`` for every assigned partition, reading with ``_take``."""
    subscriptions = fetcher._subscriptions
    while True:
        # New records may belong to another member after a rebalance: wait for the assignment.
        if subscriptions.reassignment_in_progress:
            await subscriptions.wait_for_assignment()
        started = time.monotonic()
        drained: dict[TopicPartition, FetchedRun] = {}
        for tp in list(fetcher._records):
            result = fetcher._records[tp]
            if type(result) is FetchResult:
                try:
                    run = _take(result, max_records)
                except Exception as error:  # a batch that cannot be read (CRC, codec): never step over it
                    if drained:  # hand out what was read; the error comes next, as aiokafka's FetchError does
                        fetcher._records[tp] = FetchError(error=error, backoff=0)
                        return drained
                    del fetcher._records[tp]  # fetched again from the unchanged position: it raises again
                    fetcher._notify(fetcher._wait_consume_future)
                    raise
                if not result.has_more():  # all read: ask for the next fetch
                    del fetcher._records[tp]
                    fetcher._notify(fetcher._wait_consume_future)
                if run is None:
                    continue
                drained[tp] = run
                max_records -= len(run)
                if max_records <= 0:
                    break
            elif drained:  # an error: hand out what was read, raise it next time
                return drained
            else:
                del fetcher._records[tp]
                fetcher._notify(fetcher._wait_consume_future)
                result.check_raise()
        if drained or not timeout:
            return drained
        waiter = fetcher._create_fetch_waiter()
        done, pending = await asyncio.wait([waiter], timeout=timeout)
        if not done or fetcher._closed:
            if pending:
                pending.pop().cancel()
            return {}
        if waiter.done():
            waiter.result()  # authorization errors surface here
        timeout = max(0.0, timeout - (time.monotonic() - started))


def _take(result: FetchResult, max_records: int) -> FetchedRun | None:
    """``FetchResult.getall`` read batch by batch into a run (None when it hands out nothing).

    As ``PartitionRecords`` does: a batch failing its CRC raises, control batches are skipped, so
    are a batch's messages below the fetch position (a fetch starts at its batch's first message),
    and the position moves to each batch's end.
    """
    tp = result._topic_partition
    if not result.check_assignment(tp) or not result.has_more():
        return None
    partition: PartitionRecords = result._partition_records
    batches = partition._records
    check_crcs = partition._check_crcs
    offsets: list[int] = []
    values: list[bytes | None] = []
    add_offset, add_value = offsets.append, values.append
    exhausted = True
    while batches.has_next():
        batch = batches.next_batch()
        if check_crcs and not batch.validate_crc():
            raise CorruptRecordException(f"Invalid CRC - {tp}")
        if not batch.is_control_batch:
            below = partition.next_fetch_offset
            for record in batch:
                offset = record.offset
                if offset >= below:
                    add_offset(offset)
                    add_value(record.value)
                    below = offset + 1
        partition.next_fetch_offset = batch.next_offset
        if len(offsets) >= max_records and batches.has_next():
            exhausted = False
            break
    result._update_position()
    if exhausted:
        result._partition_records = None
    return FetchedRun(offsets, values) if offsets else None
