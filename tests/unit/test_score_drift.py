"""Score drift: quiet on a long healthy stream, catches an abrupt shift at a pinned index."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from detectors._testing import in_batches, score_stream
from detectors.events import PredictionEvent
from detectors.findings import Finding, severity_for
from detectors.score_drift import ScoreDriftDetector

pytestmark = pytest.mark.unit


def test_long_healthy_stream_gives_no_findings() -> None:
    detector = ScoreDriftDetector()
    findings = [f for event in score_stream(seed=1, n=200_000) if (f := detector.update(event))]
    assert findings == []


def test_abrupt_shift_is_caught_at_pinned_index_with_evidence() -> None:
    events = score_stream(seed=7, n=3000, change_at=1000)
    detector = ScoreDriftDetector()
    found = [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]
    assert [index for index, _ in found] == [1022]  # one change, one finding (was 1087 with ADWIN)
    finding = found[0][1]
    assert finding.kind == "prediction_drift"
    assert (finding.model_id, finding.model_version) == ("churn", "v1")
    assert finding.window_start == events[1000].ts and finding.window_end == events[1022].ts
    assert float(finding.evidence["baseline_mean"]) == pytest.approx(0.30, abs=0.02)
    assert float(finding.evidence["recent_mean"]) == pytest.approx(0.60, abs=0.06)  # over only 22 predictions
    assert float(finding.evidence["effect_size_cohens_d"]) > 1.5
    assert finding.evidence["n_before"] == "1000"  # the reference sample, grown to its maximum
    assert "2026-01-01T00:16:40+00:00" in finding.summary
    assert severity_for(finding.strength) == "critical"
    assert finding.recommended_actions


def test_shift_smaller_than_minimum_effect_is_ignored() -> None:
    # Beta(3,7) -> Beta(3.2,6.8): mean 0.30 -> 0.32, far below half a standard deviation.
    events = score_stream(seed=2, n=60_000, change_at=10_000, after=(3.2, 6.8))
    detector = ScoreDriftDetector()
    assert [f for event in events if (f := detector.update(event))] == []


def test_feedback_and_missing_scores_are_skipped() -> None:
    detector = ScoreDriftDetector()
    event = score_stream(seed=3, n=1)[0]
    assert detector.update(replace(event, features={}, label="yes")) is None
    assert detector.update(replace(event, score=None)) is None
    assert detector.n_tracked_keys == 0


def test_model_versions_are_judged_separately() -> None:
    detector = ScoreDriftDetector()
    v1 = score_stream(seed=4, n=2000, change_at=1000, model=("churn", "v1"))
    v2 = score_stream(seed=5, n=2000, model=("churn", "v2"))
    findings = [f for pair in zip(v1, v2) for event in pair if (f := detector.update(event))]
    assert [(f.model_version, f.kind) for f in findings] == [("v1", "prediction_drift")]
    assert detector.n_tracked_keys == 2


def _one_by_one(detector: ScoreDriftDetector, events: list[PredictionEvent]) -> list[tuple[int, Finding]]:
    return [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]




@pytest.mark.parametrize("sizes", [(1,), (7, 64), (1024,), (3000, 5, 17)])
def test_batches_find_what_single_events_find(sizes: tuple[int, ...]) -> None:
    # Two versions interleaved; v1's first crossings are too small to report (they are forgotten) before one is not.
    v1 = score_stream(seed=4, n=4000, change_at=1000, after=(4.0, 6.0), model=("churn", "v1"))
    v2 = score_stream(seed=7, n=4000, change_at=1000, model=("churn", "v2"))
    events = [event for pair in zip(v1, v2) for event in pair]
    expected = _one_by_one(ScoreDriftDetector(min_effect=1.0), events)
    assert [(index, f.model_version) for index, f in expected] == [(2045, "v2"), (4934, "v1")]
    assert in_batches(ScoreDriftDetector(min_effect=1.0), events, sizes) == expected


def test_batches_that_could_evict_a_version_go_event_by_event() -> None:
    v1 = score_stream(seed=4, n=1500, change_at=700, model=("churn", "v1"))
    v2 = score_stream(seed=5, n=1500, model=("churn", "v2"))
    events = v1[:600] + [event for pair in zip(v1[600:], v2) for event in pair]
    expected = _one_by_one(ScoreDriftDetector(max_keys=1), events)
    detector = ScoreDriftDetector(max_keys=1)
    assert in_batches(detector, events, (500,)) == expected
    assert list(detector._states) == [("churn", "v2")]


def test_predictions_without_a_finite_score_are_left_out_of_a_batch_as_one_by_one() -> None:
    events = score_stream(seed=3, n=3_000, change_at=1_500)
    holes = [replace(event, score=None if index % 7 == 0 else math.nan if index % 11 == 0 else event.score)
             for index, event in enumerate(events)]
    one_by_one = ScoreDriftDetector()
    expected = [(index, finding.evidence) for index, event in enumerate(holes) if (finding := one_by_one.update(event))]
    batched = ScoreDriftDetector()
    found = [(start + index, finding.evidence) for start in range(0, len(holes), 500)
             for index, finding in batched.update_many(holes[start:start + 500])]
    assert found == expected and len(expected) == 1
