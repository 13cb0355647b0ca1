"""The latency benchmark's publisher, in a process of its own as real publishers are.

Usage: publisher_process.py BOOTSTRAP TAG RATE_PER_S DURATION_S WORKLOAD_EVENTS. Publishes the
latency mix (``measure.latency_event``) at a steady rate, then prints one JSON line: for each
decisive event, its principal, event time and ``time.monotonic()`` at publish (one clock for
every process on the machine, so the worker's side can subtract it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.perf.measure import bench_settings, latency_event  # noqa: E402
from bench.perf.workload import build_workload  # noqa: E402
from detectors.events import AccessEvent, PredictionEvent  # noqa: E402
from streams.codec import encode_event  # noqa: E402
from streams.publishing import partition_key, start_producer  # noqa: E402


async def main(bootstrap: str, tag: str, rate: float, duration_s: float, workload_events: int) -> None:
    settings = bench_settings(bootstrap, tag, Path("."))
    background = [event for event in build_workload(workload_events).events
                  if isinstance(event, PredictionEvent) and not event.is_feedback]
    producer = await start_producer(bootstrap)
    decisive_sends: list[tuple[str, int, float]] = []
    start, ts0, sent = time.monotonic(), 1_796_083_200_000, 0
    try:
        while (elapsed := time.monotonic() - start) < duration_s:
            due = int(elapsed * rate)
            while sent < due:
                event, decisive = latency_event(sent, ts0, background)
                topic = settings.topic_access if isinstance(event, AccessEvent) else settings.topic_predictions
                await producer.send(topic, value=encode_event(event), key=partition_key(event))
                if decisive:
                    decisive_sends.append((event.principal, event.ts, time.monotonic()))
                sent += 1
            await asyncio.sleep(0.002)
        await producer.flush()
    finally:
        await producer.stop()
    print(json.dumps({"sent": sent, "decisive": decisive_sends}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])))
