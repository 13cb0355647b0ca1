"""Segment degradation: a failing segment pair is caught while the overall metric looks stable."""

from __future__ import annotations

import random

import pytest

from detectors._testing import labeled_stream
from detectors.concept_drift import ConceptDriftDetector
from detectors.events import PredictionEvent
from detectors.findings import Finding
from detectors.segment_degradation import SegmentDegradationDetector, _ModelState

pytestmark = pytest.mark.unit

EU_ANDROID = {"region": "EU", "device": "android"}


def _found(detector: SegmentDegradationDetector | ConceptDriftDetector,
           events: list[PredictionEvent]) -> list[tuple[int, Finding]]:
    return [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]


def test_long_healthy_stream_gives_no_findings() -> None:
    events = labeled_stream(seed=1, n=150_000)  # ~42 h, ~250 ticks, 15 segments tested each
    assert _found(SegmentDegradationDetector(), events) == []


def test_failing_pair_is_caught_once_at_pinned_index_while_overall_looks_stable() -> None:
    events = labeled_stream(seed=2, n=20_000, change_at=12_000, error_after=0.5, degraded_segment=EU_ANDROID)
    found = _found(SegmentDegradationDetector(), events)
    assert [index for index, _ in found] == [18529]
    finding = found[0][1]
    assert finding.kind == "segment_degradation" and finding.segment == EU_ANDROID
    assert float(finding.evidence["recent_error_rate"]) > 0.35
    assert float(finding.evidence["rest_error_rate"]) == pytest.approx(0.2, abs=0.03)
    assert float(finding.evidence["history_error_rate"]) == pytest.approx(0.2, abs=0.05)
    assert int(finding.evidence["n_labels_segment"]) >= 100
    assert float(finding.evidence["p_value"]) < float(finding.evidence["bonferroni_threshold"])
    assert "device=android,region=EU" in finding.summary and "2026-01-01T" in finding.summary
    # The same stream through the model-wide detector: the overall error rate barely moves.
    assert _found(ConceptDriftDetector(), events) == []


def test_model_wide_rise_is_not_a_segment_finding() -> None:
    events = labeled_stream(seed=3, n=20_000, change_at=12_000, error_after=0.5)
    assert _found(SegmentDegradationDetector(), events) == []


def test_segment_that_was_always_worse_is_not_flagged() -> None:
    events = labeled_stream(seed=4, n=20_000, change_at=0, error_after=0.45, degraded_segment=EU_ANDROID)
    assert _found(SegmentDegradationDetector(), events) == []


def test_segments_with_too_few_labels_are_not_judged() -> None:
    events = labeled_stream(seed=2, n=20_000, change_at=12_000, error_after=0.5, degraded_segment=EU_ANDROID)
    assert _found(SegmentDegradationDetector(min_labels=1_000), events) == []


def test_segments_per_model_are_bounded() -> None:
    detector = SegmentDegradationDetector(max_segments=5)
    for event in labeled_stream(seed=5, n=3_000):
        detector.update(event)
    assert len(detector._states[("churn", "v1")].segments) == 5


def test_a_tick_of_tallied_labels_files_into_what_adding_each_label_gives() -> None:
    """Counts, windows and the least-recently-used order of segments all come out the same."""
    detector, rng = SegmentDegradationDetector(), random.Random(5)
    attributes = {"region": ("EU", "US"), "device": ("android", "ios", "web"), "age": ("new", "old")}
    groups = [detector._group_of({name: rng.choice(values) for name, values in attributes.items()}) for _ in range(12)]
    tallied, single = _ModelState(tick=7), _ModelState(tick=7)
    for state in (tallied, single):  # the same segments known beforehand, from an earlier tick
        for _, group in groups:
            for items in group:
                detector._segment(state, items).add(6, 0, 1, 0)
    for _ in range(300):
        numbered, error, prediction_ts = rng.choice(groups), rng.randrange(2), rng.randrange(1_000)
        assert tallied.tally(numbered, error, prediction_ts)
        single.overall.add(7, error, 1, prediction_ts)
        for items in numbered[1]:
            detector._segment(single, items).add(7, error, 1, prediction_ts)
    tallied.file()
    assert list(tallied.segments) == list(single.segments)
    assert tallied.segments == single.segments and tallied.overall == single.overall and not tallied.unfiled


@pytest.mark.parametrize("max_segments", [1_000, 13])
def test_one_micro_batch_finds_what_single_events_find(max_segments: int) -> None:
    # 15 segments (3 regions, 3 devices, 9 pairs): keeping 13, they keep being evicted and relearnt.
    events = labeled_stream(seed=2, n=20_000, change_at=12_000, error_after=0.5, degraded_segment=EU_ANDROID)
    single = _found(SegmentDegradationDetector(max_segments=max_segments), events)
    assert [index for index, _ in single] == ([18529] if max_segments == 1_000 else [20081])
    assert SegmentDegradationDetector(max_segments=max_segments).update_many(events) == single
