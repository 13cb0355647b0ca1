"""One benchmark worker process: joins the group, drains until the group's total is consumed.

Usage: worker_process.py BOOTSTRAP TAG DATA_DIR TOTAL_EVENTS. Runs until it has been idle for
5 s after its first batch, then prints one JSON line with its event count and the wall-clock
(epoch) times of its first and last batch.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.perf.measure import bench_settings  # noqa: E402
from streams.pipeline import BatchResult  # noqa: E402
from streams.store import IncidentStore, connect, ensure_schema  # noqa: E402
from streams.worker import Worker  # noqa: E402


async def main(bootstrap: str, tag: str, data_dir: str, total: int) -> None:
    settings = bench_settings(bootstrap, tag, Path(data_dir))
    client = connect(settings.resolved_clickhouse_dsn)
    ensure_schema(client)
    times: list[float] = []

    def observe(result: BatchResult) -> None:
        if result.events or result.dead_letters:
            times.append(time.time())

    worker = Worker(settings, IncidentStore(client), bootstrap, observe)
    await worker.start()
    try:
        idle_since = time.time()
        while True:
            await asyncio.sleep(0.5)
            if times and time.time() - times[-1] > 5.0:  # drained: the group's share of the topic is done
                break
            if not times and time.time() - idle_since > 120:
                break
    finally:
        await worker.stop()
        client.close()
    print(json.dumps({"events": worker.stats.events, "first_batch_at": times[0] if times else 0,
                      "last_batch_at": times[-1] if times else 0}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
