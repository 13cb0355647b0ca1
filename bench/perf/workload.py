"""The benchmark workload: realistic mixed events, encoded once, reused by every measurement."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

from detectors.events import Event, PredictionEvent
from streams.codec import encode_event, event_from_record, event_to_record
from streams.publishing import partition_key
from streams.simulator import SimulationConfig, simulate


@dataclass
class Workload:
    """``events`` decoded, ``messages`` as (event_type, key, avro bytes), and the replay lines."""

    events: list[Event]
    messages: list[tuple[str, bytes, bytes]]
    records: list[dict]


def build_workload(n_events: int, seed: int = 7, tenants: int = 1) -> Workload:
    """About ``n_events`` events of the demo's traffic mix (predictions dominate, as in production).

    With ``tenants`` > 1 each of the demo's 3 models is served as that many separate models
    (``credit-t0``, ``credit-t1``, ...; a prediction and its feedback stay on one): a fleet of
    models, as a company running many of them would publish, so keys spread over partitions.
    """
    hours = max(0.5, n_events / 8000)
    config = SimulationConfig(seed=seed, duration_s=int(hours * 3600), download_burst_at_s=int(hours * 1200),
                              score_drift_at_s=int(hours * 1800), poison_at_s=int(hours * 2600))
    records = simulate(config).records[:n_events]
    events = [event_from_record(record["type"], record["event"]) for record in records]
    if tenants > 1:
        events = [_as_tenant_model(event, tenants) for event in events]
        records = [{"type": record["type"], "event": event_to_record(event)} for record, event in zip(records, events)]
    messages = [(record["type"], partition_key(event), encode_event(event)) for record, event in zip(records, events)]
    return Workload(events, messages, records)


def _as_tenant_model(event: Event, tenants: int) -> Event:
    if not isinstance(event, PredictionEvent):
        return event
    tenant = zlib.crc32(event.event_id.encode()) % tenants  # feedback shares its prediction's event_id
    return replace(event, model_id=f"{event.model_id}-t{tenant}")
