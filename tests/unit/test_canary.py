"""Canary regression: compares versions only on concurrent traffic, names old and new, reports once per signal."""

from __future__ import annotations

import pytest

from detectors._testing import T0, canary_stream
from detectors.canary import KS_BOUND_SLACK, CanaryRegressionDetector, _ks
from detectors.events import PredictionEvent
from detectors.findings import Finding

pytestmark = pytest.mark.unit


def _found(detector: CanaryRegressionDetector, events: list[PredictionEvent]) -> list[tuple[int, Finding]]:
    return [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]


def test_a_single_version_never_gives_findings() -> None:
    assert _found(CanaryRegressionDetector(), canary_stream(seed=1, n=100_000)) == []


def test_identical_canary_gives_no_findings() -> None:
    events = canary_stream(seed=2, n=60_000, canary_from=5_000, canary_scores=(3.0, 7.0), canary_share=0.5)
    assert _found(CanaryRegressionDetector(), events) == []


def test_score_shift_of_the_canary_is_caught_at_pinned_index() -> None:
    events = canary_stream(seed=6, n=10_000, canary_from=5_000)
    found = _found(CanaryRegressionDetector(), events)
    assert [index for index, _ in found] == [7855]
    finding = found[0][1]
    assert (finding.kind, finding.model_id, finding.model_version) == ("canary_regression", "churn", "v2")
    assert finding.evidence["old_version"] == "v1" and finding.evidence["signal"] == "scores"
    assert float(finding.evidence["new_mean_score"]) > float(finding.evidence["old_mean_score"]) + 0.2
    assert int(finding.evidence["n_new"]) >= 200
    assert finding.window_start >= T0 + 5_000 * 1_000


def test_error_regression_is_caught_once_labels_arrive() -> None:
    events = canary_stream(seed=7, n=30_000, canary_from=5_000, canary_scores=(3.0, 7.0), canary_error=0.35,
                           canary_share=0.3)
    found = _found(CanaryRegressionDetector(), events)
    assert [(f.evidence["signal"], f.model_version) for _, f in found] == [("errors", "v2")]
    finding = found[0][1]
    assert float(finding.evidence["new_error_rate"]) - float(finding.evidence["old_error_rate"]) > 0.08
    assert int(finding.evidence["n_labels_new"]) >= 200 and int(finding.evidence["n_labels_old"]) >= 200


def test_versions_that_never_overlap_are_not_compared() -> None:
    # v1 serves for 4000 s, then v2 takes over completely an hour later: never concurrent.
    old = canary_stream(seed=8, n=4_000)
    new = canary_stream(seed=9, n=4_000, canary_from=0, canary_share=1.0, start_ts=T0 + 7_200_000)
    detector = CanaryRegressionDetector()
    assert _found(detector, old + new) == []
    assert detector._pairs == {}


def test_the_distance_is_only_skipped_while_its_bound_is_above_it() -> None:
    detector = CanaryRegressionDetector(min_ks=1.5)  # never reports: the distance is judged all along
    checked = 0
    for event in canary_stream(seed=6, n=10_000, canary_from=5_000):
        detector.update(event)
        pair = detector._pairs.get("churn")
        if pair is not None and all(side.scored for side in pair.sides.values()):
            old, new = pair.sides[pair.old], pair.sides[pair.new]
            assert pair.ks_bound + KS_BOUND_SLACK >= _ks(old.bins, new.bins)
            checked += 1
    assert checked > 1_000
