"""Data integrity: row-volume spikes, unapproved or self-approved changes, and changes from new sources."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors._testing import data_change_stream
from detectors.data_integrity import UnapprovedChangeDetector, VolumeSpikeDetector
from detectors.events import DataChangeEvent

pytestmark = pytest.mark.unit


def _healthy(n: int) -> list[DataChangeEvent]:
    """Thousands of approved appends to three datasets from their usual sources."""
    streams = [data_change_stream(seed=seed, n=n, dataset=name) for seed, name in enumerate(("a", "b", "c"))]
    return sorted((e for stream in streams for e in stream), key=lambda e: (e.ts, e.dataset))


def test_thousands_of_healthy_changes_give_no_findings() -> None:
    events = _healthy(1_500)
    volume = VolumeSpikeDetector()
    lineage = UnapprovedChangeDetector(high_impact_models=frozenset({"fraud-model"}))
    assert [f for e in events if (f := volume.update(e))] == []
    assert [f for e in events if (f := lineage.update(e))] == []


def test_volume_spike_is_caught_at_pinned_index_once_and_not_learned() -> None:
    events = data_change_stream(seed=3, n=50)
    events[30] = replace(events[30], rows=12_000)
    events[31] = replace(events[31], rows=11_000)  # a second spike right after is still a spike
    detector = VolumeSpikeDetector()
    found = [(i, f) for i, e in enumerate(events) if (f := detector.update(e))]
    assert [i for i, _ in found] == [30, 31]
    finding = found[0][1]
    assert finding.kind == "volume_spike" and finding.dataset == "transactions"
    assert finding.evidence["rows"] == "12000" and 900 < float(finding.evidence["baseline_median_rows"]) < 1100
    assert float(finding.evidence["robust_z"]) > 6 and finding.evidence["baseline_changes"] == "30"
    assert "v31" in finding.summary and "fraud-model" in finding.summary and "2026-01-02T06:00:00" in finding.summary
    assert detector.update(events[31]) is None  # the last flagged change, redelivered


def test_small_datasets_and_moderate_growth_are_not_spikes() -> None:
    events = data_change_stream(seed=4, n=20)
    small = [replace(e, rows=e.rows // 100) for e in events]
    small[15] = replace(small[15], rows=900)  # 90x, but below min_rows
    grown = list(events)
    grown[15] = replace(grown[15], rows=2_500)  # 2.5x is below min_ratio
    assert [f for e in small if (f := VolumeSpikeDetector().update(e))] == []
    assert [f for e in grown if (f := VolumeSpikeDetector().update(e))] == []


def test_unapproved_and_self_approved_changes_on_high_impact_data() -> None:
    events = data_change_stream(seed=11, n=20, poison_at=8)
    events[15] = replace(events[15], approved_by=events[15].actor)
    detector = UnapprovedChangeDetector(high_impact_models=frozenset({"fraud-model"}))
    found = [(i, f) for i, e in enumerate(events) if (f := detector.update(e))]
    assert [(i, f.kind, f.evidence["check"]) for i, f in found] == [
        (8, "unapproved_change", "no_approval+new_source"), (15, "unapproved_change", "self_approved")]
    first = found[0][1]
    assert first.strength == 1.0
    assert first.evidence["high_impact_because"] == "it trains high-impact model(s) fraud-model"
    assert "partner-feed" in first.summary and "contractor-7" in first.summary and "no approval" in first.summary


def test_missing_approval_matters_only_for_impactful_datasets() -> None:
    unconsumed = [replace(e, approved_by=None, consumers=()) for e in data_change_stream(seed=2, n=10)]
    assert [f for e in unconsumed if (f := UnapprovedChangeDetector().update(e))] == []
    by_name = UnapprovedChangeDetector(high_impact_prefixes=("trans",))
    assert len([f for e in unconsumed if (f := by_name.update(e))]) == 10
    consumed = [replace(e, approved_by=None) for e in data_change_stream(seed=2, n=10)]  # trains fraud-model
    found = [f for e in consumed if (f := UnapprovedChangeDetector().update(e))]
    assert [(f.evidence["impact"], f.strength) for f in found] == [("consumed", 0.8)] * 10
    opted_out = UnapprovedChangeDetector(consumed_is_impactful=False)
    assert [f for e in consumed if (f := opted_out.update(e))] == []


def test_self_approval_is_always_flagged_stronger_on_impactful_data() -> None:
    event = replace(data_change_stream(seed=2, n=1)[0], approved_by="svc-ingest")  # its own actor
    cases = [(UnapprovedChangeDetector(high_impact_models=frozenset({"fraud-model"})), event, "high", 0.9),
             (UnapprovedChangeDetector(), event, "consumed", 0.8),
             (UnapprovedChangeDetector(), replace(event, consumers=()), "none", 0.6)]
    for detector, change, impact, strength in cases:
        finding = detector.update(change)
        assert finding is not None and finding.evidence["check"] == "self_approved"
        assert (finding.evidence["impact"], finding.strength) == (impact, strength)
        assert "approved by its own actor svc-ingest" in finding.summary


def test_new_source_after_warmup_is_provenance_once_per_source() -> None:
    events = data_change_stream(seed=5, n=20)
    events[2] = replace(events[2], source="vendor")  # during warm-up: learned, not flagged
    events[10] = replace(events[10], source="vendor-upload")
    events[12] = replace(events[12], source="vendor-upload")
    detector = UnapprovedChangeDetector()
    found = [(i, f) for i, e in enumerate(events) if (f := detector.update(e))]
    assert [(i, f.kind, f.evidence["check"]) for i, f in found] == [(10, "provenance_mismatch", "new_source")]
    assert found[0][1].evidence["known_sources"] == "vendor,etl-nightly" and found[0][1].strength == 0.5
