"""Helpers for the reliability tests: worker subprocesses, publishing, group offsets.

Worker processes run ``python -m streams.cli worker`` exactly as an operator would, with
every setting passed through ``MLSENTRY_*`` environment variables.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.codec import event_from_record
from streams.pipeline import engine_from_settings
from streams.publishing import encode_for_wire, partition_key, start_producer
from streams.replay import replay
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
WIRE = {"prediction": "avro", "access": "json", "data_change": "confluent"}


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``mlsentry worker`` load exactly ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MLSENTRY_")}
    env.update(settings.to_environ(), PYTHONPATH=str(ROOT))
    return env


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=ROOT, env=worker_env(settings),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_worker(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=10)


async def publish(settings: Settings, bootstrap: str, items: Iterable[dict[str, Any]]) -> int:
    topics = {kind: topic for topic, kind in settings.input_topics.items()}
    producer = await start_producer(bootstrap)
    try:
        futures = []
        for item in items:
            event = event_from_record(item["type"], item["event"])
            value = encode_for_wire(event, item["event"], WIRE[item["type"]])
            futures.append(await producer.send(topics[item["type"]], value=value, key=partition_key(event)))
        for future in futures:
            await future
        return len(futures)
    finally:
        await producer.stop()


async def group_lag(settings: Settings, bootstrap: str) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(committed offsets of the group, end offsets) for every input partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in settings.input_topics for p in range(settings.topic_partitions)]
        end = await consumer.end_offsets(partitions)
        committed = {tp: (await consumer.committed(tp)) or 0 for tp in partitions}
        return committed, end
    finally:
        await consumer.stop()


async def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2) -> float:
    """Await ``condition()`` (sync or async) becoming truthy; seconds waited."""
    started = time.monotonic()
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(poll_s)


async def caught_up(settings: Settings, bootstrap: str) -> bool:
    committed, end = await group_lag(settings, bootstrap)
    return all(committed[tp] >= end[tp] for tp in end)


def replay_incident_ids(settings: Settings, records: list[dict[str, Any]], kinds: set[str] | None = None) -> set[str]:
    out = io.StringIO()
    replay([json.dumps(record) for record in records], engine_from_settings(settings), out)
    incidents = [json.loads(line) for line in out.getvalue().splitlines()]
    return {i["incident_id"] for i in incidents if kinds is None or i["kind"] in kinds}


def stored_incidents(dsn: str, database: str = "mlsentry") -> list[tuple[str, str]]:
    """(incident_id, kind) of every row in ``incidents FINAL`` (opens and closes chDB in this process)."""
    from streams.store import connect, query

    client = connect(dsn, database=database)
    try:
        _, rows = query(client, f"SELECT incident_id, kind FROM {database}.incidents FINAL")
        return [(row[0], row[1]) for row in rows]
    finally:
        client.close()
