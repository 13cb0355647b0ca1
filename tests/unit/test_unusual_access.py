"""Unusual access: denied-then-success sequences and new principals on high-impact artifacts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors._testing import MINUTE_MS, T0, download_stream
from detectors.events import AccessEvent
from detectors.unusual_access import UnusualAccessDetector

pytestmark = pytest.mark.unit

BASE = AccessEvent("e", T0, "alice", "download", "model", "fraud:v3", bytes=100 * 2**20)


def _attempts(principal: str, resource: str, denied: int, start: int, step_ms: int = 1_000) -> list[AccessEvent]:
    return [replace(BASE, event_id=f"{principal}-{i}", ts=start + i * step_ms, principal=principal, resource=resource,
                    outcome="denied" if i < denied else "success") for i in range(denied + 1)]


def test_a_day_of_normal_downloads_gives_no_findings() -> None:
    detector = UnusualAccessDetector(high_impact_prefixes=("model-1",), warmup_ms=60 * MINUTE_MS)
    events = download_stream(seed=2, n_principals=200, minutes=1440)
    assert [f for event in events if (f := detector.update(event))] == []


def test_doctest_stream_is_caught_at_pinned_indices() -> None:
    events = download_stream(seed=2, n_principals=20, minutes=60)
    merged = sorted(events + _attempts("intruder", "model-7", 4, T0 + 30 * MINUTE_MS)
                    + [replace(BASE, event_id="v", ts=T0 + 50 * MINUTE_MS, principal="visitor")], key=lambda e: e.ts)
    detector = UnusualAccessDetector(high_impact_resources=frozenset({"fraud:v3"}), warmup_ms=20 * MINUTE_MS)
    found = [(i, f) for i, e in enumerate(merged) if (f := detector.update(e))]
    assert [(i, f.evidence["check"]) for i, f in found] == [(150, "denied_then_success"),
                                                             (254, "first_time_high_impact")]
    denied = found[0][1]
    assert denied.kind == "unusual_access" and (denied.principal, denied.resource) == ("intruder", "model-7")
    assert denied.window_start == T0 + 30 * MINUTE_MS and denied.evidence["denied_attempts"] == "4"
    assert "2026-01-01T00:30:00+00:00" in denied.summary


def test_denials_must_be_enough_recent_and_on_the_same_resource() -> None:
    detector = UnusualAccessDetector()
    assert [f for e in _attempts("a", "r", 2, T0) if (f := detector.update(e))] == []  # too few
    slow = _attempts("b", "r", 3, T0, step_ms=10 * MINUTE_MS)  # spread beyond the window
    assert [f for e in slow if (f := detector.update(e))] == []
    other = _attempts("c", "r", 3, T0)
    other[-1] = replace(other[-1], resource="elsewhere")
    assert [f for e in other if (f := detector.update(e))] == []


def test_denied_then_success_fires_once_and_high_impact_raises_strength() -> None:
    detector = UnusualAccessDetector(high_impact_resources=frozenset({"crown"}))
    plain = [f for e in _attempts("a", "r", 3, T0) if (f := detector.update(e))]
    crown = [f for e in _attempts("b", "crown", 3, T0) if (f := detector.update(e))]
    again = replace(_attempts("a", "r", 3, T0)[-1], ts=T0 + 5_000)
    assert len(plain) == len(crown) == 1 and detector.update(again) is None
    assert plain[0].strength == pytest.approx(0.6) and crown[0].strength == pytest.approx(0.8)


def test_first_time_high_impact_needs_a_principal_new_since_warmup_and_a_new_resource() -> None:
    detector = UnusualAccessDetector(warmup_ms=MINUTE_MS, new_principal_ms=60 * MINUTE_MS)
    high = replace(BASE, attributes={"impact": "high"})
    assert detector.update(high) is None  # alice is there during warm-up: established
    assert detector.update(replace(high, resource="crown", ts=T0 + 2 * MINUTE_MS)) is None
    newcomer = replace(high, principal="bob", ts=T0 + 3 * MINUTE_MS)
    finding = detector.update(newcomer)
    assert finding is not None and finding.evidence["check"] == "first_time_high_impact"
    assert finding.strength == pytest.approx(0.7) and "bob" in finding.summary
    assert detector.update(replace(newcomer, ts=T0 + 4 * MINUTE_MS)) is None  # bob already pulled it
    assert detector.update(replace(BASE, principal="carol", ts=T0 + 4 * MINUTE_MS)) is None  # not high impact
    assert detector.update(replace(newcomer, resource="crown", ts=T0 + 90 * MINUTE_MS)) is None  # bob not new now


def test_accessed_resources_behave_like_a_capped_lru() -> None:
    """The compact store (a string, then a dict) answers exactly as an LRU dict of resources would."""
    import random
    from collections import OrderedDict

    from detectors.unusual_access import UnusualAccessDetector, _PrincipalState

    rng = random.Random(9)
    for cap in (0, 1, 2, 4):
        detector, state, reference = UnusualAccessDetector(max_resources=cap), _PrincipalState(0), OrderedDict()
        for _ in range(300):
            resource = f"r{rng.randint(0, 6)}"
            detector._remember_access(state, resource)
            reference[resource] = None
            reference.move_to_end(resource)
            while len(reference) > cap:
                reference.popitem(last=False)
            assert state.n_accessed == len(reference)
            assert all(state.has_accessed(f"r{index}") == (f"r{index}" in reference) for index in range(7))
