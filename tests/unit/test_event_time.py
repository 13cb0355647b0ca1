"""Event-time abuse: forged timestamps are dead-lettered and never reach the detectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.admission import OUT_OF_BOUNDS, EventTimeGuard
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


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy's uint8 in the loop, on purpose
@settings(max_examples=400, deadline=None)
@given(stamps=st.lists(st.one_of(st.integers(-2_000, 2_000).map(lambda step: 1_000_000 + 37 * step),
                                 st.sampled_from([2.5, 1 << 70, -(1 << 63), True, np.int64(1_000_000),
                                                  np.uint8(5)])), min_size=1, max_size=150),
       received_at=st.integers(900_000, 1_100_000), max_future_ms=st.sampled_from([0, 1_000, 100_000]),
       allowed_lateness_ms=st.sampled_from([0, 500, 50_000]),
       watermark=st.one_of(st.none(), st.integers(900_000, 1_100_000)))
def test_the_numpy_screen_accepts_exactly_what_the_loop_accepts(
        stamps: list[int], received_at: int, max_future_ms: int, allowed_lateness_ms: int, watermark: int | None) -> None:
    """A batch of 64 or more times is first screened at once (``_all_accepted``); it must leave the
    same refusals and watermark (or raise the same error: numpy's own integers can overflow) as
    looking at each time in turn."""
    def guard() -> EventTimeGuard:
        made = EventTimeGuard(max_future_ms, allowed_lateness_ms)
        if watermark is not None:
            made.watermarks[("t", 0)] = watermark
        return made

    at_once, one_by_one = guard(), guard()
    try:
        refused: object = at_once.screen(("t", 0), stamps, received_at)
    except OverflowError:
        refused = OverflowError
    try:
        looked_at: object = [(index, reason) for index, ts in enumerate(stamps)
                             if (reason := one_by_one.check(("t", 0), ts, received_at)) is not None]
    except OverflowError:
        looked_at = OverflowError
    assert refused == looked_at
    if refused is not OverflowError:
        assert at_once.watermarks == one_by_one.watermarks
        assert {type(mark) for mark in at_once.watermarks.values()} == {type(mark) for mark in one_by_one.watermarks.values()}


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy's uint8 in the loop, on purpose
@pytest.mark.parametrize("first", [np.uint8(5), True, np.int64(5)])
def test_times_that_are_not_plain_ints_are_screened_one_by_one(first: object) -> None:
    """numpy's integers and bools keep their own arithmetic in the loop (a uint8 wraps around), which
    the screen at once, in int64, would not: a batch holding one is looked at time by time."""
    stamps = [first] + [5] * 63
    at_once = EventTimeGuard(max_future_ms=1_000, allowed_lateness_ms=100)
    one_by_one = EventTimeGuard(max_future_ms=1_000, allowed_lateness_ms=100)
    refused = at_once.screen(("t", 0), stamps, 10)  # type: ignore[arg-type]
    assert refused == [(index, reason) for index, ts in enumerate(stamps)
                       if (reason := one_by_one.check(("t", 0), ts, 10)) is not None]  # type: ignore[arg-type]
    assert repr(at_once.watermarks) == repr(one_by_one.watermarks)
