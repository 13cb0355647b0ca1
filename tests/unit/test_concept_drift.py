"""Concept drift: joins delayed labels, catches a lasting error-rate rise once, stays quiet otherwise."""

from __future__ import annotations

import pytest

from detectors._testing import T0, labeled_stream
from detectors.concept_drift import ConceptDriftDetector
from detectors.events import PredictionEvent
from detectors.findings import Finding

pytestmark = pytest.mark.unit


def _found(detector: ConceptDriftDetector, events: list[PredictionEvent]) -> list[tuple[int, Finding]]:
    return [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]


def test_long_healthy_stream_gives_no_findings() -> None:
    events = labeled_stream(seed=1, n=100_000)
    assert _found(ConceptDriftDetector(), events) == []


def test_error_rise_is_caught_at_pinned_index_with_evidence() -> None:
    events = labeled_stream(seed=3, n=8_000, change_at=4_000, error_after=0.45)
    found = _found(ConceptDriftDetector(), events)
    assert [index for index, _ in found] == [6330]  # was 6648 before the error-rate CUSUM
    finding = found[0][1]
    assert (finding.kind, finding.model_id, finding.model_version) == ("concept_drift", "churn", "v1")
    assert float(finding.evidence["baseline_error_rate"]) == pytest.approx(0.2, abs=0.03)
    assert float(finding.evidence["recent_error_rate"]) > 0.35
    assert int(finding.evidence["labels_joined"]) > 1_000 and finding.evidence["join_misses"] == "0"
    assert T0 + 3_400_000 <= finding.window_start <= T0 + 4_300_000  # change at prediction 4000 (t = 4000 s)
    assert "2026-01-01T" in finding.summary and finding.recommended_actions


def test_labels_outside_the_horizon_are_not_learned() -> None:
    detector = ConceptDriftDetector(horizon_ms=60_000)  # feedback arrives 5-15 minutes late
    events = labeled_stream(seed=3, n=8_000, change_at=4_000, error_after=0.45)
    assert _found(detector, events) == []
    assert detector._join.counts.joined == 0 and detector._join.counts.expired > 0


def test_versions_are_judged_separately() -> None:
    detector = ConceptDriftDetector()
    v1 = labeled_stream(seed=4, n=8_000, change_at=4_000, error_after=0.5, model=("churn", "v1"))
    v2 = labeled_stream(seed=5, n=8_000, model=("churn", "v2"))
    merged = sorted(v1 + v2, key=lambda event: event.ts)
    assert [f.model_version for _, f in _found(detector, merged)] == ["v1"]
    assert detector.n_tracked_keys == 2


def test_small_rise_below_minimum_effect_is_ignored() -> None:
    events = labeled_stream(seed=6, n=60_000, change_at=10_000, error_after=0.23)
    assert _found(ConceptDriftDetector(), events) == []


def test_one_micro_batch_finds_what_single_events_find_while_versions_are_evicted() -> None:
    v1 = labeled_stream(seed=4, n=8_000, change_at=4_000, error_after=0.5, model=("churn", "v1"))
    v2 = labeled_stream(seed=5, n=8_000, change_at=2_000, error_after=0.55, model=("churn", "v2"))
    v3 = labeled_stream(seed=6, n=2, model=("churn", "v3"), step_ms=4_000_000, start_ts=T0 + 1_000_000)
    events = sorted(v1 + v2 + v3, key=lambda event: event.ts)  # each v3 prediction evicts v1 or v2
    single = _found(ConceptDriftDetector(max_keys=2), events)
    assert [(index, f.model_version) for index, f in single] == [(7311, "v2"), (12618, "v1")]
    assert ConceptDriftDetector(max_keys=2).update_many(events) == single
