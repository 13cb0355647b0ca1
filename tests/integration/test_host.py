"""`mlsentry worker` runs inside a Faust app: lifecycle, /health and /stats, on the real broker."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from streams.acks import AckTracker
from streams.broker import free_port
from streams.host import STALL_AFTER_S, build_host, health_of
from streams.pipeline import ListSink
from streams.publishing import encode_for_wire, partition_key, start_producer
from streams.codec import event_from_record
from streams.topics import ensure_topics
from streams.worker import Worker, WorkerStats
from tests.conftest import isolated_settings

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_faust_host_runs_the_worker_and_serves_health_and_stats(embedded_broker, tmp_path: Path):
    port = free_port()
    settings = isolated_settings(tmp_path, embedded_broker.bootstrap_servers, web_port=port)
    await ensure_topics(settings, embedded_broker.bootstrap_servers)
    worker = Worker(settings, ListSink(), embedded_broker.bootstrap_servers)
    acks = AckTracker()
    host = build_host(settings, worker, acks)
    await host.start()
    try:
        producer = await start_producer(embedded_broker.bootstrap_servers)
        record = {"event_id": "h1", "ts": 1_000, "principal": "p", "action": "query", "resource_type": "endpoint",
                  "resource": "fraud-api", "count": 2}
        for index in range(30):
            event = event_from_record("access", {**record, "event_id": f"h{index}"})
            await producer.send_and_wait(settings.topic_access, encode_for_wire(event, None, "avro"),
                                         key=partition_key(event))
        ack = {"command_id": "c1", "action": "throttle", "target": "p", "mode": "dry_run",
               "outcome": "skipped_dry_run", "acked_at": 5}
        await producer.send_and_wait(settings.topic_containment_acks, json.dumps(ack).encode())
        await producer.send_and_wait(settings.topic_containment_acks, b"not json")
        await producer.stop()
        deadline = time.monotonic() + 60
        while (worker.stats.events < 30 or not acks.malformed) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        status, health = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/health")
        assert status == 200 and health["status"] == "ok" and health["running"] is True
        _, stats = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/stats")
        assert stats["events"] == 30 and stats["batches"] >= 1
        assert stats["containment_acks"]["by_outcome"] == {"skipped_dry_run": 1}
        assert stats["containment_acks"]["malformed"] == 1
    finally:
        await host.stop()
    assert not worker.running, "stopping the Faust app stops the detection worker"


def test_health_reports_a_stalled_worker():
    stats = WorkerStats(assigned=[("t", 0)], last_batch_at=100.0)
    worker = SimpleNamespace(running=True, stats=stats)
    assert health_of(worker, now=100.0 + STALL_AFTER_S / 2)[0] == 200  # type: ignore[arg-type]
    status, body = health_of(worker, now=100.0 + STALL_AFTER_S + 1)  # type: ignore[arg-type]
    assert status == 503 and body["stalled"] is True
    assert health_of(SimpleNamespace(running=False, stats=stats), now=100.0)[0] == 503  # type: ignore[arg-type]
