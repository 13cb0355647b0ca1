"""The benchmark workload: realistic mixed events, encoded once, reused by every measurement."""

from __future__ import annotations

from dataclasses import dataclass

from detectors.events import Event
from streams.codec import encode_event, event_from_record
from streams.publishing import partition_key
from streams.simulator import SimulationConfig, simulate


@dataclass
class Workload:
    """``events`` decoded, ``messages`` as (event_type, key, avro bytes), and the replay lines."""

    events: list[Event]
    messages: list[tuple[str, bytes, bytes]]
    records: list[dict]


def build_workload(n_events: int, seed: int = 7) -> Workload:
    """About ``n_events`` events of the demo's traffic mix (predictions dominate, as in production)."""
    hours = max(0.5, n_events / 8000)
    config = SimulationConfig(seed=seed, duration_s=int(hours * 3600), download_burst_at_s=int(hours * 1200),
                              score_drift_at_s=int(hours * 1800), poison_at_s=int(hours * 2600))
    records = simulate(config).records[:n_events]
    events = [event_from_record(record["type"], record["event"]) for record in records]
    messages = [(record["type"], partition_key(event), encode_event(event)) for record, event in zip(records, events)]
    return Workload(events, messages, records)
