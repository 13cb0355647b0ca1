"""Feature drift: quiet on long healthy streams, catches abrupt and gradual shifts once each."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors._testing import T0, feature_stream, in_batches
from detectors.events import PredictionEvent
from detectors.feature_drift import FeatureDriftDetector
from detectors.findings import Finding

pytestmark = pytest.mark.unit


def _found(detector: FeatureDriftDetector, events: list[PredictionEvent]) -> list[tuple[int, Finding]]:
    return [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]


def test_long_healthy_stream_gives_no_findings() -> None:
    assert _found(FeatureDriftDetector(), feature_stream(seed=1, n=120_000)) == []


def test_abrupt_shift_is_caught_at_pinned_index_with_evidence() -> None:
    events = feature_stream(seed=5, n=8_000, change_at=3_000, shift=0.8)
    found = _found(FeatureDriftDetector(), events)
    assert [index for index, _ in found] == [3046]  # one change, one finding (was 3155 with ADWIN)
    finding = found[0][1]
    assert finding.kind == "feature_drift" and finding.evidence["feature"] == "x"
    assert (finding.model_id, finding.model_version) == ("churn", "v1")
    assert events[2_900].ts <= finding.window_start <= events[3_050].ts
    assert float(finding.evidence["recent_mean_rank"]) > float(finding.evidence["baseline_mean_rank"]) + 0.15
    assert float(finding.evidence["effect_size_std"]) >= 0.35
    assert "2026-01-01T" in finding.summary and finding.recommended_actions


def test_gradual_ramp_over_hours_is_caught_once() -> None:
    # x creeps from mean 0 to mean 1 over four hours (one event a second).
    events = feature_stream(seed=1, n=30_000, change_at=5_000, shift=1.0, ramp=14_400)
    found = _found(FeatureDriftDetector(), events)
    assert [(index, f.evidence["feature"]) for index, f in found] == [(7925, "x")]  # 49 minutes into the ramp
    assert found[0][1].window_start > T0 + 5_000 * 1_000


def test_small_shift_below_minimum_effect_is_ignored() -> None:
    events = feature_stream(seed=2, n=60_000, change_at=10_000, shift=0.05)
    assert _found(FeatureDriftDetector(), events) == []


def test_features_per_model_are_bounded() -> None:
    detector = FeatureDriftDetector(max_features=2)
    for event in feature_stream(seed=3, n=10):
        detector.update(event)
    state = detector._states[("churn", "v1")]
    assert sorted(state.features) == ["amount", "visits"]


def test_feedback_and_non_finite_values_are_skipped() -> None:
    detector = FeatureDriftDetector()
    event = feature_stream(seed=3, n=1)[0]
    assert detector.update(replace(event, features={}, label="yes")) is None
    assert detector.update(replace(event, features={"x": float("nan")})) is None
    cusum = detector._states[("churn", "v1")].features["x"].cusum
    assert cusum.reference == [] and cusum._warmup == []




@pytest.mark.parametrize("sizes", [(1,), (7, 64), (1024,), (5000, 3, 16)])
def test_batches_find_what_single_events_find(sizes: tuple[int, ...]) -> None:
    # A ramp whose first crossings are too small to report, then one that is; ``y`` always equals ``x``
    # (ties in one event go to the first feature), with the odd missing, extra or non-finite value.
    events = feature_stream(seed=1, n=12_000, change_at=5_000, shift=1.0, ramp=3_000)
    events = [replace(e, features={**e.features, "y": e.features["x"]}) for e in events]
    for index in range(7, len(events), 97):
        events[index] = replace(events[index], features={**events[index].features, "visits": float("nan")})
    for index in range(11, len(events), 389):
        events[index] = replace(events[index], features={"x": 0.0, "y": 0.0, "extra": 1.0})
    expected = _found(FeatureDriftDetector(min_effect=0.5), events)
    assert [(index, f.evidence["feature"]) for index, f in expected] == [(6590, "x")]  # and y, as strongly
    assert in_batches(FeatureDriftDetector(min_effect=0.5), events, sizes) == expected


def test_batches_keep_the_pinned_abrupt_shift() -> None:
    events = feature_stream(seed=5, n=8_000, change_at=3_000, shift=0.8)
    assert in_batches(FeatureDriftDetector(), events, (1024,)) == _found(FeatureDriftDetector(), events)
