"""Measurement 7: a worker process killed (SIGKILL) mid-stream, and a new one started in its place.

The first worker drains half the workload and snapshots its detector state; the second half
is published and the worker is killed while it reads it: no revocation, no final snapshot,
no clean leave. A new worker process then starts with the same settings (the product's
default session timeout, so the group coordinator first waits out the dead member). Reported:
seconds from the restart to the group's first new commit (resumed) and to every partition
caught up (recovered), which include process start, group join, snapshot restore, replay of
what came after the snapshots, and the rest of the backlog.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.perf.measure import bench_settings, publish_messages
from bench.perf.workload import Workload
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """``mlsentry worker`` with exactly ``settings``, as an operator would run it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MLSENTRY_")}
    env.update(settings.to_environ(), PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=ROOT, env=env,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def _committed_and_end(settings: Settings, bootstrap: str) -> tuple[int, int]:
    """(sum of the group's committed offsets, sum of end offsets) over the input partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in settings.input_topics for p in range(settings.topic_partitions)]
        end = await consumer.end_offsets(partitions)
        committed = [(await consumer.committed(tp)) or 0 for tp in partitions]
        return sum(committed), sum(end.values())
    finally:
        await consumer.stop()


async def _wait(condition: Any, timeout_s: float, poll_s: float = 0.1) -> float:
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"not reached within {timeout_s} s")
        await asyncio.sleep(poll_s)
    return time.monotonic() - started


async def recovery(bootstrap: str, workload: Workload, data_dir: Path, tag: str = "recovery",
                   group_instance_id: str = "", session_timeout_s: float = Settings.session_timeout_s) -> dict[str, Any]:
    settings = bench_settings(bootstrap, tag, data_dir, snapshot_key="bench-recovery-key",
                              topic_snapshots=f"{tag}.snapshots", snapshot_every_s=1.0,
                              session_timeout_s=session_timeout_s, group_instance_id=group_instance_id)
    half = len(workload.messages) // 2
    await publish_messages(settings, bootstrap, workload.messages[:half])

    async def caught_up() -> bool:
        committed, end = await _committed_and_end(settings, bootstrap)
        return committed >= end

    first = _start_worker(settings, data_dir.with_suffix(".worker-1.log"))
    try:
        await _wait(caught_up, 300)
        await asyncio.sleep(2 * settings.snapshot_every_s)  # at least one snapshot after the last batch
        await publish_messages(settings, bootstrap, workload.messages[half:])
        await asyncio.sleep(0.3)  # mid-stream: the worker is reading the second half
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    committed_at_kill, end = await _committed_and_end(settings, bootstrap)

    restarted = time.monotonic()
    second = _start_worker(settings, data_dir.with_suffix(".worker-2.log"))
    try:
        async def resumed() -> bool:
            return (await _committed_and_end(settings, bootstrap))[0] > committed_at_kill

        resumed_s = await _wait(resumed, 300)
        recovered_s = await _wait(caught_up, 300) + resumed_s
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    log = data_dir.with_suffix(".worker-2.log").read_text(errors="replace")
    return {"resumed_s": resumed_s, "recovered_s": recovered_s, "backlog_at_kill": end - committed_at_kill,
            "restored_from_snapshot": "restored from snapshot" in log,
            "session_timeout_s": settings.session_timeout_s, "wall_s": time.monotonic() - restarted}
