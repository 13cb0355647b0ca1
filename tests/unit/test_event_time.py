"""Event-time abuse: forged timestamps are dead-lettered and never reach the detectors."""

from __future__ import annotations

import json

import pytest

from streams.admission import OUT_OF_BOUNDS
from streams.pipeline import Pipeline, RawMessage
from streams.settings import Settings

pytestmark = pytest.mark.unit

NOW = 1_800_000_000_000
HOUR = 3_600_000


def _access(n: int, ts: int, principal: str = "alice") -> bytes:
    return json.dumps({"event_id": f"e{n}", "ts": ts, "principal": principal, "action": "download",
                       "resource_type": "model", "resource": "m"}).encode()


def _pipeline() -> Pipeline:
    return Pipeline.from_settings(Settings.load({}, max_event_future_s=3600, allowed_lateness_s=86_400))


def _run(pipeline: Pipeline, values: list[bytes], received_at: int = NOW):
    topic = Settings().topic_access
    return pipeline.process_batch([RawMessage(topic, 0, n, v, received_at) for n, v in enumerate(values)])




def test_far_future_and_far_past_events_are_dead_lettered_and_honest_ones_pass():
    pipeline = _pipeline()
    honest = [_access(n, NOW - 60_000 + n) for n in range(10)]
    forged = [_access(100, NOW + 2 * HOUR), _access(101, 4_000_000_000_000_000), _access(102, NOW - 3 * 24 * HOUR)]
    result = _run(pipeline, honest[:5] + forged + honest[5:])
    assert result.events == 10
    assert [d.offset for d in result.dead_letters] == [5, 6, 7]
    assert all(d.reason.startswith(OUT_OF_BOUNDS) and d.error_kind == "validation" for d in result.dead_letters)


def test_a_forged_future_event_cannot_make_later_honest_events_look_late():
    pipeline = _pipeline()
    _run(pipeline, [_access(1, NOW)])
    _run(pipeline, [_access(2, NOW + 50 * 60_000)])  # within the future bound: accepted ...
    later = _run(pipeline, [_access(3, NOW - 20 * HOUR)], received_at=NOW + 60_000)
    assert later.events == 1, "... but the watermark never ran ahead of the wall clock"
    assert pipeline.guard.watermarks[(Settings().topic_access, 0)] <= NOW + 60_000


def test_the_rule_is_per_partition():
    pipeline = _pipeline()
    topic = Settings().topic_access
    pipeline.process_batch([RawMessage(topic, 0, 0, _access(1, NOW), NOW)])
    result = pipeline.process_batch([RawMessage(topic, 1, 0, _access(2, NOW - 3 * 24 * HOUR), NOW)])
    assert result.events == 1  # partition 1 has no watermark yet
