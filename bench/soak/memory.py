"""Soak: one million distinct principals through the real pipeline; peak memory against a ceiling.

Usage: python -m bench.soak.memory [N_PRINCIPALS] [CEILING_MB]. Feeds N access events (JSON
on the wire, one new principal each, 5,000 per batch) through ``Pipeline.process_batch`` with
the default detectors on one partition, then prints one JSON line: events/s, the number of
principals the detectors hold (bounded by their ``max_keys`` LRU), and peak RSS. Exits 1
when peak RSS exceeds the ceiling.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from streams.pipeline import Pipeline, RawMessage
from streams.settings import Settings

START = 1_800_000_000_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(n: int = 1_000_000, ceiling_mb: float = 1536.0) -> int:
    settings = Settings.load({})
    pipeline = Pipeline.from_settings(settings)
    topic = settings.topic_access
    baseline = _rss_mb()
    started = time.perf_counter()
    batch = 5_000
    for first in range(0, n, batch):
        messages = []
        for index in range(first, min(first + batch, n)):
            ts = START + index  # one event per ms: all inside any lateness bound
            value = json.dumps({"event_id": f"e{index}", "ts": ts, "principal": f"principal-{index}",
                                "action": ("download", "query")[index % 2], "resource_type": "model",
                                "resource": f"model-{index % 50}"}).encode()
            messages.append(RawMessage(topic, 0, index, value, ts))
        pipeline.process_batch(messages)
    seconds = time.perf_counter() - started
    held = {d.name: len(getattr(d, "_states", {})) for d in pipeline.shard((topic, 0)).detectors
            if hasattr(d, "_states")}
    peak = _rss_mb()
    print(json.dumps({"principals": n, "seconds": round(seconds, 1), "events_per_s": round(n / seconds),
                      "baseline_rss_mb": round(baseline), "peak_rss_mb": round(peak), "ceiling_mb": ceiling_mb,
                      "principals_held_per_detector": held}))
    return 0 if peak <= ceiling_mb else 1


if __name__ == "__main__":
    raise SystemExit(main(*(int(arg) if i == 0 else float(arg) for i, arg in enumerate(sys.argv[1:]))))
