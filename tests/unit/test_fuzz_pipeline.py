"""Hostile input at the pipeline level: every message ends as an event, a dead letter or a documented rule.

Decoders alone are fuzzed in test_codec.py; here the whole batch path (decode, event-time
rule, per-key cap, detectors, incident book) must survive a mix of valid and hostile
messages with zero exceptions, and every valid event between the bad ones is processed.
Documented rules exercised: unknown enum symbols in JSON map to ``other`` (accepted);
Confluent schema ids are not checked unless ``allowed_schema_ids`` is configured.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from streams.codec import encode_event, event_from_record
from streams.pipeline import Pipeline, RawMessage
from streams.publishing import encode_for_wire
from streams.settings import Settings
from streams.simulator import SimulationConfig, simulate

pytestmark = pytest.mark.unit

RECEIVED_AT = SimulationConfig().start_ms + 3 * 3_600_000


def _hostile(rng: random.Random, valid_avro: bytes, valid_json: dict) -> list[tuple[str, bytes]]:
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    return [
        ("random bytes", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))),
        ("truncated avro", valid_avro[: rng.randint(1, len(valid_avro) - 1)]),
        ("wrong confluent id, garbage body", b"\x00" + rng.randbytes(4) + rng.randbytes(20)),
        ("deep json", deep),
        ("huge json", json.dumps({**valid_json, "event_id": "x" * 300_000}).encode()),
        ("nan", json.dumps({**valid_json, "score": float("nan")}).encode()),
        ("inf", json.dumps({**valid_json, "score": float("inf")}).encode()),
        ("negative ts", json.dumps({**valid_json, "ts": -1}).encode()),
        ("far-future ts", json.dumps({**valid_json, "ts": RECEIVED_AT + 10 * 365 * 86_400_000}).encode()),
        ("ts beyond 2**53", json.dumps({**valid_json, "ts": 2**63}).encode()),
        ("10 MB value", b"{" + b" " * (10 << 20) + b"}"),
        ("empty", b""),
        ("json array", b"[1,2,3]"),
        ("invalid utf-8", b'{"event_id": "\xff\xfe"}'),
    ]


def test_a_hostile_mix_is_dead_lettered_and_every_valid_event_is_processed():
    rng = random.Random(5)
    settings = Settings.load({})
    pipeline = Pipeline.from_settings(settings)
    records = [r for r in simulate(SimulationConfig(seed=4, duration_s=3600)).records if r["type"] == "prediction"]
    topic = settings.topic_predictions
    messages, kinds, valid = [], Counter(), 0
    for index, record in enumerate(records):
        event = event_from_record("prediction", record["event"])
        if index % 80 == 0:
            for name, value in _hostile(rng, encode_event(event), record["event"]):
                messages.append(RawMessage(topic, 0, len(messages), value, RECEIVED_AT))
                kinds[name] += 1
        wire = ("json", "avro", "confluent")[index % 3]
        messages.append(RawMessage(topic, 0, len(messages), encode_for_wire(event, record["event"], wire), RECEIVED_AT))
        valid += 1
    # Documented rules: an unknown enum symbol is accepted as "other"; any Confluent id is read.
    unknown_enum = json.dumps({"event_id": "u1", "ts": RECEIVED_AT - 1000, "principal": "p", "action": "exfiltrate",
                               "resource_type": "model", "resource": "m"}).encode()
    access = [RawMessage(settings.topic_access, 0, 0, unknown_enum, RECEIVED_AT)]

    results = [pipeline.process_batch(messages[i:i + 500]) for i in range(0, len(messages), 500)]
    results.append(pipeline.process_batch(access))
    events = sum(r.events for r in results)
    dead = [d for r in results for d in r.dead_letters]
    print(f"\nfuzz: {len(messages) + 1} messages, {valid} valid, {sum(kinds.values())} hostile "
          f"({dict(kinds)}); processed {events}, dead letters {len(dead)} "
          f"({dict(Counter(d.error_kind for d in dead))})")
    assert events == valid + 1, "every valid event (and the documented enum rule) is processed"
    assert len(dead) == sum(kinds.values()), "every hostile message became exactly one dead letter"
    assert all(d.reason for d in dead)
    assert all(d.raw == messages[d.offset].value for d in dead), "dead letters keep the raw bytes"
