"""Label detectors in one DetectorSet share a feedback join and find exactly what each finds alone."""

from __future__ import annotations

import pytest

from detectors._testing import canary_stream, in_batches, labeled_stream
from detectors.base import share_feedback_joins
from detectors.canary import CanaryRegressionDetector
from detectors.concept_drift import ConceptDriftDetector
from detectors.engine import DetectorSet
from detectors.events import Event
from detectors.segment_degradation import SegmentDegradationDetector

pytestmark = pytest.mark.unit

EU_ANDROID = {"region": "EU", "device": "android"}


def _label_detectors() -> list:
    return [ConceptDriftDetector(), SegmentDegradationDetector(), CanaryRegressionDetector()]


@pytest.fixture(scope="module")
def events() -> list[Event]:
    degraded = labeled_stream(seed=2, n=20_000, change_at=12_000, error_after=0.5, degraded_segment=EU_ANDROID)
    model_wide = labeled_stream(seed=3, n=20_000, change_at=12_000, error_after=0.5, model=("credit", "v1"))
    canary = canary_stream(seed=5, n=20_000, canary_from=5_000, canary_error=0.45, old=("fraud", "v1"),
                           new=("fraud", "v2"))
    return sorted(degraded + model_wide + canary, key=lambda event: event.ts)


def _alone(events: list[Event]) -> list[tuple[int, str, dict[str, str]]]:
    found = []
    for detector in _label_detectors():
        found += [(position, f.detector, f.evidence) for position, f in in_batches(detector, events, (1_024, 77))]
    return sorted(found, key=lambda item: (item[0], item[1]))


def test_a_detector_set_shares_one_join_among_detectors_of_the_same_horizon_and_size() -> None:
    detector_set = DetectorSet(_label_detectors() + [ConceptDriftDetector(horizon_ms=60_000)])
    joins = [detector.feedback_join for detector in detector_set.detectors]  # type: ignore[attr-defined]
    assert joins[0] is joins[1] is joins[2] and joins[3] is not joins[0]


def test_a_join_that_has_learned_is_not_replaced() -> None:
    concept, segment = ConceptDriftDetector(), SegmentDegradationDetector()
    concept.update_many(labeled_stream(seed=1, n=100))
    share_feedback_joins([concept, segment])
    assert concept.feedback_join is not segment.feedback_join and concept.feedback_join.n_pending > 0


def test_shared_joins_find_what_own_joins_find(events: list[Event]) -> None:
    expected = _alone(events)
    assert {detector for _, detector, _ in expected} == {"concept_drift", "segment_degradation",
                                                         "canary_regression"}
    detector_set = DetectorSet(_label_detectors())
    found = []
    for start in range(0, len(events), 1_000):
        found += [(start + position, f.detector, f.evidence)
                  for position, f in detector_set.update_batch(events[start:start + 1_000])]
    assert sorted(found, key=lambda item: (item[0], item[1])) == expected


def test_event_by_event_through_the_set_finds_the_same(events: list[Event]) -> None:
    detector_set = DetectorSet(_label_detectors())
    found = [(position, f.detector, f.evidence) for position, event in enumerate(events)
             for f in detector_set.update(event)]
    assert sorted(found, key=lambda item: (item[0], item[1])) == _alone(events)


def test_a_snapshot_keeps_the_join_shared(events: list[Event]) -> None:
    """Snapshots pickle the whole set: restored, its detectors still share one join, and go on alike."""
    import pickle

    detector_set, twin = DetectorSet(_label_detectors()), DetectorSet(_label_detectors())
    half = len(events) // 2
    detector_set.update_batch(events[:half])
    twin.update_batch(events[:half])
    restored = pickle.loads(pickle.dumps(detector_set))
    joins = {id(detector.feedback_join) for detector in restored.detectors}  # type: ignore[attr-defined]
    assert len(joins) == 1
    rest = events[half:]
    expected = [(p, f.evidence) for p, f in twin.update_batch(rest)]
    assert expected and [(p, f.evidence) for p, f in restored.update_batch(rest)] == expected


def _state_of(detector) -> list:
    if isinstance(detector, CanaryRegressionDetector):
        return [list(detector._versions.items()), list(detector._latest.items()), list(detector._pairs)]
    return [(key, state.predictions) for key, state in detector._states.items()]


@pytest.mark.parametrize("make", [ConceptDriftDetector, SegmentDegradationDetector, CanaryRegressionDetector],
                         ids=lambda make: make.name)
def test_taking_predictions_from_the_batchs_grouping_is_walking_them_one_by_one(make, events: list[Event]) -> None:
    """The grouped path (labels walked, predictions taken per version) against the walk over every event."""
    from detectors.batch import Batch

    grouped, in_order = make(), make()
    found_grouped, found_in_order = [], []
    for start in range(0, len(events), 700):
        batch = Batch(events[start:start + 700])
        found_grouped += [(start + p, f.evidence) for p, f in grouped.update_batch(batch)]
        found_in_order += [(start + p, f.evidence) for p, f in
                           in_order._update_in_order(batch.events, batch.matches(in_order.feedback_join))]
        assert _state_of(grouped) == _state_of(in_order)
    assert found_grouped == found_in_order and len(found_grouped) >= 1
