"""Input anomaly: one odd source is one finding; anomalous events are not learned; healthy traffic is quiet."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors._testing import anomaly_stream
from detectors.events import PredictionEvent
from detectors.findings import Finding
from detectors.input_anomaly import InputAnomalyDetector

pytestmark = pytest.mark.unit


def _found(detector: InputAnomalyDetector, events: list[PredictionEvent]) -> list[tuple[int, Finding]]:
    return [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]


def test_long_healthy_stream_gives_no_findings() -> None:
    assert _found(InputAnomalyDetector(), anomaly_stream(seed=1, n=60_000)) == []


def test_odd_source_is_one_finding_at_pinned_index() -> None:
    events = anomaly_stream(seed=4, n=12_000, odd_principal="svc-7", odd_from=6_000)
    found = _found(InputAnomalyDetector(), events)
    assert [(index, f.principal) for index, f in found] == [(6178, "svc-7")]  # one source, one finding
    finding = found[0][1]
    assert (finding.kind, finding.model_id, finding.model_version) == ("input_anomaly", "churn", "v1")
    assert int(finding.evidence["anomalous_events"]) >= 10
    assert float(finding.evidence["anomalous_rate"]) >= 0.2 and float(finding.evidence["rate_ratio"]) >= 10
    assert events[6_000].ts <= finding.window_start <= finding.ts
    assert "svc-7" in finding.summary and "2026-01-01T" in finding.summary


def test_anomalous_events_are_not_learned() -> None:
    detector = InputAnomalyDetector()
    for event in anomaly_stream(seed=2, n=4_000):
        detector.update(event)
    state = detector._states[("churn", "v1")]
    learned, flagged = state.learned, state.flagged
    odd = anomaly_stream(seed=3, n=2_000, odd_principal="svc-0", n_principals=1)
    for event in odd:
        detector.update(event)
    assert state.flagged - flagged == 2_000  # every odd input stays anomalous ...
    assert state.learned == learned  # ... because none of them was learned as normal


def test_events_without_principal_are_scored_but_not_aggregated() -> None:
    detector = InputAnomalyDetector()
    events = anomaly_stream(seed=4, n=12_000, odd_principal="svc-7", odd_from=6_000)
    assert _found(detector, [replace(event, principal=None) for event in events]) == []
    assert detector.n_tracked_principals == 0 and detector._states[("churn", "v1")].judged > 0


def test_principals_are_bounded() -> None:
    detector = InputAnomalyDetector(max_principals=50, warmup=10, calibration=10)
    for index, event in enumerate(anomaly_stream(seed=5, n=2_000)):
        detector.update(replace(event, principal=f"p{index}"))
    assert detector.n_tracked_principals == 50
