"""Where the time goes: per-stage and per-detector cost on the benchmark workload, no broker.

python -m bench.perf.profile [--events N]

Prints µs per event for Avro decoding and validation, JSON replay parsing, each detector on
the micro-batch path (batches of 1,024, as replay feeds them) and the incident book. What detectors
share per batch (a feedback join's matches, the predictions grouped by version) is charged to the
first to ask for it. Timings
of one stage run with the others' state warm, so they add up to about the engine's cost.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from bench.perf.workload import build_workload
from detectors.base import update_many
from detectors.batch import Batch
from detectors.engine import EngineOutput, feed_book
from streams.codec import decoder_for
from streams.pipeline import engine_from_settings
from streams.replay import ReplayReport, iter_events
from streams.runtime import tune_garbage_collector
from streams.settings import Settings

BATCH = 1_024


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.profile")
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    settings = Settings.load(environ={})
    workload = build_workload(args.events)
    lines = [json.dumps(record) for record in workload.records]
    tune_garbage_collector(settings.gc_young_threshold)
    n = len(workload.events)
    print(f"{n:,} events: {dict(Counter(type(event).__name__ for event in workload.events))}")

    decoders = {kind: decoder_for(kind) for kind in ("prediction", "access", "data_change")}
    started = time.perf_counter()
    for kind, _, value in workload.messages:
        decoders[kind].decode(value)
    print(f"  Avro decode + validation    {_us(started, n):6.2f} us/event")
    started = time.perf_counter()
    for _ in iter_events(lines, ReplayReport()):
        pass
    print(f"  JSON replay line parsing    {_us(started, n):6.2f} us/event")

    engine = engine_from_settings(settings)
    spent, seen = Counter(), Counter()
    book_s = 0.0
    for start in range(0, n, BATCH):
        batch = workload.events[start:start + BATCH]
        findings = []
        shared: dict[tuple[type, ...], tuple[list[int], Batch]] = {}  # derivations: paid by the first detector
        for detector in engine.detectors:
            if detector.event_types not in shared:
                positions = [index for index, event in enumerate(batch) if isinstance(event, detector.event_types)]
                shared[detector.event_types] = positions, Batch([batch[index] for index in positions])
            positions, subset = shared[detector.event_types]
            began = time.perf_counter()
            found = update_many(detector, subset.events, subset)
            spent[detector.name] += time.perf_counter() - began
            seen[detector.name] += len(subset.events)
            findings.extend((positions[index], order, finding) for index, finding in found
                            for order in [engine.detectors.index(detector)])
        findings.sort(key=lambda item: item[:2])
        began = time.perf_counter()
        feed_book(engine.book, batch, [(position, finding) for position, _, finding in findings], EngineOutput())
        book_s += time.perf_counter() - began
    total = sum(spent.values()) + book_s
    print(f"  detectors + incident book   {total / n * 1e6:6.2f} us/event  (engine alone about {n / total:,.0f} events/s)")
    for name, seconds in spent.most_common():
        print(f"    {name:22s} {seconds / max(seen[name], 1) * 1e6:6.2f} us per event it reads ({seen[name]:,} events)")
    print(f"    {'incident book':22s} {book_s / n * 1e6:6.2f} us per event")


def _us(started: float, n: int) -> float:
    return (time.perf_counter() - started) / n * 1e6


if __name__ == "__main__":
    main()
