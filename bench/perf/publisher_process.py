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
    # Encoded before the clock starts: on a 2-core machine that also runs the broker and the worker,
    # encoding while publishing took CPU the worker needed, and "half load" was not half.
    ts0, planned = 1_796_083_200_000, int(rate * duration_s) + 1
    messages = []
    for index in range(planned):
        event, decisive = latency_event(index, ts0, background)
        topic = settings.topic_access if isinstance(event, AccessEvent) else settings.topic_predictions
        messages.append((topic, partition_key(event), encode_event(event), decisive, event.principal, event.ts))
    producer = await start_producer(bootstrap)
    decisive_sends: list[tuple[str, int, float]] = []
    start, sent = time.monotonic(), 0
    try:
        while (elapsed := time.monotonic() - start) < duration_s and sent < planned:
            due = min(int(elapsed * rate), planned)
            while sent < due:
                topic, key, value, decisive, principal, ts = messages[sent]
                await producer.send(topic, value=value, key=key)
                if decisive:
                    decisive_sends.append((principal, ts, time.monotonic()))
                sent += 1
            await asyncio.sleep(0.002)
        await producer.flush()
    finally:
        await producer.stop()
    print(json.dumps({"sent": sent, "decisive": decisive_sends}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])))
