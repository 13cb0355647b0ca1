"""``streams.fetch`` reads what aiokafka's ``getmany`` reads, message by message, on the real broker.

The worker reads whole fetches through aiokafka's fetcher internals (see streams/fetch.py); these
tests hold it to ``getmany`` on what a broker really returns: plain and gzip-compressed record
batches, a tombstone, keys and headers it must ignore, fetches that start inside a batch (a seek),
small ``max_records`` and small fetches that split a partition's log.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Awaitable, Callable

import aiokafka
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.fetch import fetch_runs, reads_whole_fetches
from streams.fetched_run import FetchedRun
from streams.topics import ensure_topics
from tests.conftest import isolated_settings

pytestmark = pytest.mark.integration

_groups = itertools.count()
#: Messages per record batch as published (the producer's explicit batches).
BATCH = 40
Read = Callable[[AIOKafkaConsumer, int], Awaitable[dict[Any, Any]]]


async def _getmany(consumer: AIOKafkaConsumer, max_records: int) -> dict[Any, Any]:
    return await consumer.getmany(timeout_ms=500, max_records=max_records)


async def _fetch_runs(consumer: AIOKafkaConsumer, max_records: int) -> dict[Any, Any]:
    runs = await fetch_runs(consumer, 500, max_records)
    assert all(type(run) is FetchedRun for run in runs.values())
    return runs


async def _publish(bootstrap: str, topic: str) -> int:
    """Record batches of ``BATCH`` messages on partitions 0 and 1, every third batch gzip-compressed."""
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    gzip = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
    await plain.start()
    await gzip.start()
    sent = 0
    try:
        for number in range(12):
            producer = gzip if number % 3 == 2 else plain
            batch = producer.create_batch()
            for index in range(BATCH):
                value = None if (number, index) == (4, 7) else f"batch {number} message {index} ".encode() * (1 + index % 5)
                assert batch.append(key=f"k{index}".encode(), value=value, timestamp=None,
                                    headers=[("h", b"1")]) is not None
            batch.close()
            await (await producer.send_batch(batch, topic, partition=number % 2))
            sent += BATCH
    finally:
        await plain.stop()
        await gzip.stop()
    return sent


async def _drain(bootstrap: str, topic: str, read: Read, expected: int, max_records: int = 10_000,
                 seek_to: int | None = None, fetch_bytes: int = 1 << 20) -> tuple[dict[int, list[tuple[int, Any]]], int]:
    """Every message from the start (or ``seek_to``) per partition, and the most one call handed out."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"fetch-test-{next(_groups)}",
                                auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=4000,
                                heartbeat_interval_ms=500, max_partition_fetch_bytes=fetch_bytes)
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.01)
        assert reads_whole_fetches(consumer)
        if seek_to is not None:
            for tp in consumer.assignment():
                consumer.seek(tp, seek_to)
        got: dict[int, list[tuple[int, Any]]] = {0: [], 1: []}
        largest = 0
        for _ in range(2_000):
            if sum(map(len, got.values())) >= expected:
                break
            batch = await read(consumer, max_records)
            largest = max(largest, sum(map(len, batch.values())))
            for tp, records in batch.items():
                got[tp.partition].extend((record.offset, record.value) for record in records)
        return got, largest
    finally:
        await consumer.stop()


async def _topic(embedded_broker: Any, tmp_path: Any) -> tuple[str, str, int]:
    settings = isolated_settings(tmp_path, embedded_broker.bootstrap_servers)
    await ensure_topics(settings, embedded_broker.bootstrap_servers)
    sent = await _publish(embedded_broker.bootstrap_servers, settings.topic_predictions)
    return embedded_broker.bootstrap_servers, settings.topic_predictions, sent


async def test_whole_fetches_read_what_getmany_reads(embedded_broker, tmp_path) -> None:
    bootstrap, topic, sent = await _topic(embedded_broker, tmp_path)
    expected, _ = await _drain(bootstrap, topic, _getmany, sent)
    assert sum(map(len, expected.values())) == sent and (2 * BATCH + 7, None) in expected[0]
    got, _ = await _drain(bootstrap, topic, _fetch_runs, sent)
    assert got == expected
    # small fetches: a partition's log arrives over many fetches, some ending inside a batch
    small, _ = await _drain(bootstrap, topic, _fetch_runs, sent, fetch_bytes=3_000)
    assert small == expected


async def test_a_fetch_from_inside_a_batch_skips_the_batch_s_earlier_messages(embedded_broker, tmp_path) -> None:
    bootstrap, topic, sent = await _topic(embedded_broker, tmp_path)
    seek_to = BATCH + 13  # the 14th message of each partition's second batch: gzip on 0, plain on 1
    expected, _ = await _drain(bootstrap, topic, _getmany, sent - 2 * seek_to, seek_to=seek_to)
    got, _ = await _drain(bootstrap, topic, _fetch_runs, sent - 2 * seek_to, seek_to=seek_to)
    assert got == expected and min(offset for offset, _ in got[0]) == seek_to


async def test_max_records_bounds_a_call_to_within_one_record_batch(embedded_broker, tmp_path) -> None:
    bootstrap, topic, sent = await _topic(embedded_broker, tmp_path)
    expected, most_getmany = await _drain(bootstrap, topic, _getmany, sent, max_records=25)
    got, most_runs = await _drain(bootstrap, topic, _fetch_runs, sent, max_records=25)
    assert got == expected
    assert most_getmany <= 25 and most_runs <= 25 + BATCH - 1, "a batch is read whole, then the call ends"
    with pytest.raises(ValueError):
        await fetch_runs(AIOKafkaConsumer(), 0, 0)


@pytest.mark.parametrize("unusual", [{"isolation_level": "read_committed"}, {"value_deserializer": bytes.decode},
                                     {"key_deserializer": bytes.decode}, {"aiokafka": "0.15.0"}],
                         ids=["read_committed", "value deserializer", "key deserializer", "unchecked aiokafka"])
async def test_consumers_it_was_not_checked_for_are_left_to_getmany(embedded_broker, tmp_path, monkeypatch,
                                                                     unusual) -> None:
    """read_committed needs aiokafka's aborted-transaction filtering; getmany would deserialize; another aiokafka
    version may fetch otherwise."""
    bootstrap, topic, _ = await _topic(embedded_broker, tmp_path)
    options = dict(unusual)
    if "aiokafka" in options:
        monkeypatch.setattr(aiokafka, "__version__", options.pop("aiokafka"))
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"fetch-test-{next(_groups)}",
                                session_timeout_ms=4000, heartbeat_interval_ms=500, **options)
    await consumer.start()
    try:
        assert not reads_whole_fetches(consumer)
        monkeypatch.undo()
        assert reads_whole_fetches(consumer) is (not options), "the same consumer, as checked"
    finally:
        await consumer.stop()
    assert not reads_whole_fetches(AIOKafkaConsumer()), "not started: no fetcher yet"
