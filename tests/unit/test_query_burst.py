"""Query bursts: quiet over days of diurnal service traffic, one finding per burst, peers for newcomers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors._testing import MINUTE_MS, T0, query_stream
from detectors.query_burst import QueryBurstDetector

pytestmark = pytest.mark.unit


def _found(detector: QueryBurstDetector, events: list) -> list:  # type: ignore[type-arg]
    return [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]


def test_two_days_of_diurnal_traffic_give_no_findings() -> None:
    detector = QueryBurstDetector()
    events = query_stream(seed=4, n_principals=40, minutes=2 * 1440)
    assert _found(detector, events) == []
    assert detector.n_tracked_keys == 40


def test_burst_is_caught_once_at_pinned_index_with_evidence() -> None:
    events = query_stream(seed=3, n_principals=20, minutes=360, burst=("u3", 330, 2_000, 10))
    found = _found(QueryBurstDetector(), events)
    assert [index for index, _ in found] == [5795]  # ten burst minutes, one finding
    finding = found[0][1]
    assert finding.kind == "query_burst" and finding.principal == "u3"
    assert T0 + 330 * MINUTE_MS <= finding.window_start < T0 + 331 * MINUTE_MS
    assert finding.evidence["queries_in_window"] == "2000"
    assert finding.evidence["baseline"] == "own+hour" and finding.evidence["hour_of_day_utc"] == "5"
    assert float(finding.evidence["ratio_to_baseline_mean"]) > 5
    assert "u3" in finding.summary and "2026-01-01T05:30:" in finding.summary
    assert 0.0 <= finding.strength <= 1.0 and finding.recommended_actions


def test_a_burst_through_idle_minutes_of_a_batch_job_is_one_finding() -> None:
    events = query_stream(seed=3, n_principals=20, minutes=360, burst=("u4", 330, 2_000, 20))
    assert [f.principal for _, f in _found(QueryBurstDetector(), events)] == ["u4"]


def test_moderate_rise_within_the_daily_rhythm_is_not_a_burst() -> None:
    # 1.5x the usual rate is within what the daily rhythm itself does; min_ratio=2 keeps it quiet.
    events = query_stream(seed=5, n_principals=10, minutes=240)
    boosted = [replace(e, count=int(e.count * 1.5)) if e.principal == "u1" and e.ts > T0 + 200 * MINUTE_MS else e
               for e in events]
    assert _found(QueryBurstDetector(), boosted) == []


def test_new_principal_is_judged_against_peers() -> None:
    events = query_stream(seed=6, n_principals=10, minutes=120)
    newcomer = [replace(events[0], event_id=f"n{i}", principal="newcomer", ts=T0 + (100 + i) * MINUTE_MS, count=5_000)
                for i in range(3)]
    merged = sorted(events + newcomer, key=lambda e: e.ts)
    found = [f for _, f in _found(QueryBurstDetector(), merged)]
    assert [(f.principal, f.evidence["baseline"]) for f in found] == [("newcomer", "peers")]


def test_nothing_is_judged_before_anyone_has_history_and_downloads_are_ignored() -> None:
    event = query_stream(seed=7, n_principals=1, minutes=1)[0]
    detector = QueryBurstDetector()
    assert detector.update(replace(event, count=10**6)) is None
    assert detector.update(replace(event, action="download", principal="other", count=10**6)) is None
    assert detector.n_tracked_keys == 1
