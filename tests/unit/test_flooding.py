"""Flooding: one principal's flood cannot evict other principals' state or crowd them out of a batch.

Scaled down from a million to 100,000 flood events (the mechanism is per batch and per
key, so the count only changes run time): state is per principal with an LRU over
*distinct* principals, so one principal, however loud, holds one slot; and the per-batch
cap lets at most ``max_events_per_key_per_batch`` of its events reach the detectors in
any batch, the excess being summarised in one dead letter per batch.
"""

from __future__ import annotations

import json

import pytest

from streams.pipeline import Pipeline, RawMessage
from streams.settings import Settings

pytestmark = pytest.mark.unit

START = 1_800_000_000_000
FLOOD = 100_000
BATCH_FLOOD = 2_000
OTHERS = 300


def _access(n: int, ts: int, principal: str) -> bytes:
    return json.dumps({"event_id": f"e{n}", "ts": ts, "principal": principal, "action": "download",
                       "resource_type": "model", "resource": f"m{n % 7}"}).encode()


def test_a_flooding_principal_neither_evicts_nor_starves_the_others():
    settings = Settings.load({}, max_events_per_key_per_batch=200)
    pipeline = Pipeline.from_settings(settings)
    topic, offset, others_sent, analysed_flood, shed = settings.topic_access, 0, 0, 0, 0
    for batch_index in range(FLOOD // BATCH_FLOOD):
        ts = START + batch_index * 1000
        values = [_access(offset + i, ts, "flooder") for i in range(BATCH_FLOOD)]
        values += [_access(offset + BATCH_FLOOD + i, ts, f"user-{i}") for i in range(OTHERS)]
        messages = [RawMessage(topic, 0, offset + i, value, ts) for i, value in enumerate(values)]
        offset += len(messages)
        result = pipeline.process_batch(messages)
        others_sent += OTHERS
        analysed_flood += min(BATCH_FLOOD, 200)
        shed += result.shed
        assert len(result.dead_letters) == 1 and "per-key cap" in result.dead_letters[0].reason
        assert result.events == OTHERS + 200, "every other principal's event is analysed in the same batch"
    assert shed == FLOOD - analysed_flood
    burst = next(d for d in pipeline.shard((topic, 0)).detectors if d.name == "download_burst")
    held = set(burst._states)
    assert {f"user-{i}" for i in range(OTHERS)} <= held, "no other principal's state was evicted"
    assert len(held) == OTHERS + 1
