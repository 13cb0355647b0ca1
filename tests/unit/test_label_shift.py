"""Label shift: quiet on a healthy dataset, catches a poisoned change and does not learn it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from detectors._testing import data_change_stream
from detectors.label_shift import LabelShiftDetector, chi2_sf

pytestmark = pytest.mark.unit


def _df3(x: float) -> float:
    """Closed form of the chi-square(3) survival function."""
    return math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)


def test_healthy_changes_give_no_findings() -> None:
    detector = LabelShiftDetector()
    assert [f for event in data_change_stream(seed=4, n=2000) if (f := detector.update(event))] == []


def test_poisoned_change_is_caught_at_pinned_index_with_evidence() -> None:
    events = data_change_stream(seed=11, n=20, poison_at=8)
    detector = LabelShiftDetector()
    found = [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]
    assert [index for index, _ in found] == [8]
    finding = found[0][1]
    assert finding.kind == "label_shift" and finding.dataset == "transactions"
    assert finding.evidence["version"] == "v9"
    assert finding.evidence["source"] == "partner-feed" and finding.evidence["actor"] == "contractor-7"
    assert finding.evidence["approved_by"] == "" and finding.evidence["consumers"] == "fraud-model"
    assert float(finding.evidence["tvd"]) == pytest.approx(0.26, abs=0.01)
    assert float(finding.evidence["p_value"]) < 1e-100
    assert "fraud=0.0499" in finding.evidence["baseline_proportions"]
    for word in ("transactions", "v9", "partner-feed", "contractor-7", "no approval", "fraud-model"):
        assert word in finding.summary


def test_poisoned_change_is_not_learned() -> None:
    events = data_change_stream(seed=11, n=20, poison_at=8)
    detector = LabelShiftDetector()
    for event in events[:9]:
        detector.update(event)
    again = replace(events[8], version="v9b", event_id="again")
    assert detector.update(again) is not None  # still a shift: the first one was not learned
    assert detector.update(again) is None  # the same flagged change redelivered


def test_warmup_and_min_rows_gate_findings() -> None:
    events = data_change_stream(seed=12, n=10, poison_at=2)
    assert [f for e in events if (f := LabelShiftDetector().update(e))] == []
    small = [replace(e, label_counts={k: v // 20 for k, v in e.label_counts.items()}) for e in events]
    detector = LabelShiftDetector(warmup=1)
    assert [f for e in small if (f := detector.update(e))] == []


@pytest.mark.parametrize(
    ("x", "df", "expected"),
    [(3.841458820694124, 1, 0.05), (5.991464547107979, 2, 0.05), (11.070497693516351, 5, 0.05), (0.5, 3, _df3(0.5)), (90.0, 3, _df3(90.0))],
)
def test_chi2_survival_matches_tables(x: float, df: int, expected: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(expected, rel=1e-5)


def _two_sources(n: int, shift_a_at: int | None = None) -> list:  # type: ignore[type-arg]
    """One dataset fed alternately by source A (2% fraud) and source B (40% fraud)."""
    a = data_change_stream(seed=21, n=n, labels={"legit": 0.98, "fraud": 0.02}, poison_at=shift_a_at,
                           poisoned={"legit": 0.75, "fraud": 0.25})
    b = data_change_stream(seed=22, n=n, labels={"legit": 0.6, "fraud": 0.4})
    merged = []
    for index in range(n):
        merged.append(replace(a[index], source="A", version=f"a{index}", ts=a[index].ts))
        merged.append(replace(b[index], source="B", version=f"b{index}", ts=b[index].ts + 1))
    return merged


def test_sources_with_different_mixes_are_judged_against_their_own_history() -> None:
    detector = LabelShiftDetector()
    found = [(index, f.evidence["baseline"]) for index, event in enumerate(_two_sources(200))
             if (f := detector.update(event))]
    # Only source B's 2nd and 3rd changes, before B has `warmup` changes of its own, look odd against the
    # pooled mix; from then on each source is judged against itself (pooling alone would flag ~every change).
    assert found == [(3, "dataset"), (5, "dataset")]


def test_a_source_changing_its_mix_is_caught_even_when_the_pooled_mix_hides_it() -> None:
    detector = LabelShiftDetector()
    events = _two_sources(60, shift_a_at=40)
    found = [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]
    assert [(index, f.evidence["baseline"], f.evidence["source"]) for index, f in found][2:] == [(80, "source", "A")]
    assert "from source A" in found[-1][1].summary


def _scaled(events: list, factor: int = 5) -> list:  # type: ignore[type-arg]
    return [replace(e, label_counts={k: v * factor for k, v in e.label_counts.items()}) for e in events]


def test_small_shift_on_a_big_approved_change_is_caught() -> None:
    events = _scaled(data_change_stream(seed=13, n=40, poison_at=30, labels={"repaid": 0.88, "default": 0.12},
                                        poisoned={"repaid": 0.8, "default": 0.2}))
    events[30] = replace(events[30], source="etl-nightly", actor="svc-ingest", approved_by="data-steward")
    detector = LabelShiftDetector()
    found = [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]
    assert [index for index, _ in found] == [30]
    evidence = found[0][1].evidence
    assert 0.05 <= float(evidence["tvd"]) < 0.15 and float(evidence["p_value"]) < 1e-12
    assert float(evidence["spread_z"]) >= 5.0
    large_only = LabelShiftDetector(small_tvd_threshold=0.15)
    assert [f for e in events if (f := large_only.update(e))] == []


def test_thousands_of_big_healthy_changes_stay_quiet() -> None:
    detector = LabelShiftDetector()
    events = _scaled(data_change_stream(seed=4, n=3000, labels={"repaid": 0.88, "default": 0.12}))
    assert [f for event in events if (f := detector.update(event))] == []


def test_batches_that_vary_more_than_sampling_are_judged_on_their_own_spread() -> None:
    # Each batch's share wanders by +-6 points (not sampling noise): p is tiny on 5,000 rows, yet no shift.
    events = []
    for index, event in enumerate(data_change_stream(seed=6, n=300)):
        share = 0.30 + 0.06 * ((index * 7919) % 11 - 5) / 5
        events.append(replace(event, label_counts={"click": int(5000 * share), "skip": 5000 - int(5000 * share)}))
    detector, without_spread_gate = LabelShiftDetector(), LabelShiftDetector(spread_k=0.0)
    assert [f for event in events if (f := detector.update(event))] == []
    assert [f for event in events if (f := without_spread_gate.update(event))] != []
