"""Provenance: hash mismatches and content hashes re-used as another version."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors._testing import data_change_stream
from detectors.findings import severity_for
from detectors.provenance import ProvenanceDetector

pytestmark = pytest.mark.unit


def test_clean_changes_give_no_findings() -> None:
    detector = ProvenanceDetector()
    events = [replace(e, expected_hash=e.content_hash) for e in data_change_stream(seed=1, n=500)]
    assert [f for event in events if (f := detector.update(event))] == []


def test_expected_hash_mismatch_is_critical_with_both_hashes() -> None:
    events = data_change_stream(seed=5, n=20)
    events[5] = replace(events[5], expected_hash="sha256:approved")
    detector = ProvenanceDetector()
    found = [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]
    assert [index for index, _ in found] == [5]
    finding = found[0][1]
    assert finding.kind == "provenance_mismatch" and finding.strength == 1.0
    assert severity_for(finding.strength) == "critical"
    assert finding.evidence["expected_hash"] == "sha256:approved"
    assert finding.evidence["content_hash"] == events[5].content_hash
    assert (finding.evidence["version"], finding.evidence["actor"], finding.evidence["source"]) == (
        "v6", "svc-ingest", "etl-nightly",
    )


def test_hash_reused_for_another_version_of_the_same_dataset() -> None:
    events = data_change_stream(seed=5, n=20)
    events[12] = replace(events[12], content_hash=events[2].content_hash)
    detector = ProvenanceDetector()
    found = [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]
    assert [(index, f.evidence["check"], f.evidence["earlier_version"]) for index, f in found] == [
        (12, "hash_reuse", "v3")
    ]


def test_same_version_redelivered_or_other_dataset_is_not_reuse() -> None:
    event = data_change_stream(seed=5, n=1)[0]
    detector = ProvenanceDetector()
    assert detector.update(event) is None
    assert detector.update(event) is None
    assert detector.update(replace(event, dataset="copy-of-transactions", version="v9")) is None
