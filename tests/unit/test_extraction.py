"""Extraction: boundary probing and one-feature sweeps by one principal; quiet on normal callers and drift."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors._testing import T0, in_batches, prediction_traffic, score_stream
from detectors.events import PredictionEvent
from detectors.extraction import ExtractionDetector

pytestmark = pytest.mark.unit


def _found(detector: ExtractionDetector, events: list[PredictionEvent]) -> list[tuple[int, object]]:
    return [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]


def test_long_healthy_traffic_gives_no_findings() -> None:
    events = prediction_traffic(seed=2, n=60_000, principals=40)
    assert _found(ExtractionDetector(), events) == []


@pytest.mark.parametrize("after", [(5.0, 5.0), (30.0, 30.0)])
def test_population_drift_is_not_probing(after: tuple[float, float]) -> None:
    # Every caller's scores move towards the boundary together (prediction drift, not extraction).
    events = score_stream(seed=3, n=20_000, change_at=8_000, before=(2.0, 5.0), after=after)
    callers = [replace(e, principal=f"s{index % 7}") for index, e in enumerate(events)]
    assert _found(ExtractionDetector(), callers) == []


def test_boundary_probing_is_caught_once_at_pinned_index() -> None:
    events = prediction_traffic(seed=1, n=6000, attacker="scraper", attack_at=3000)
    found = _found(ExtractionDetector(), events)
    assert [index for index, _ in found] == [3297]
    finding = found[0][1]
    assert finding.kind == "query_burst" and finding.principal == "scraper"  # type: ignore[attr-defined]
    assert (finding.model_id, finding.model_version) == ("credit", "v7")  # type: ignore[attr-defined]
    evidence = finding.evidence  # type: ignore[attr-defined]
    assert evidence["check"] == "boundary_probing" and evidence["principal_predictions"] == "100"
    assert float(evidence["principal_near_boundary_share"]) > 0.9
    assert float(evidence["population_near_boundary_share"]) < 0.2
    assert finding.window_start == T0 + 3000 * 500  # type: ignore[attr-defined]
    assert "scraper" in finding.summary and "credit:v7" in finding.summary  # type: ignore[attr-defined]


def test_feature_sweep_is_caught_once_at_pinned_index() -> None:
    events = prediction_traffic(seed=1, n=6000, attacker="scraper", attack_at=3000, attack="sweep")
    found = _found(ExtractionDetector(), events)
    assert [index for index, _ in found] == [3060]
    evidence = found[0][1].evidence  # type: ignore[attr-defined]
    assert (evidence["check"], evidence["feature"], evidence["direction"]) == ("feature_sweep", "amount", "upward")
    assert evidence["consecutive_queries"] == "20"


def test_sweep_needs_all_other_features_fixed_and_one_direction() -> None:
    base = PredictionEvent("e", T0, "m", "v1", principal="p", features={"a": 0.0, "b": 1.0}, score=0.1)
    zigzag = [replace(base, ts=T0 + i, features={"a": float(i % 2), "b": 1.0}) for i in range(100)]
    two_moving = [replace(base, ts=T0 + i, features={"a": float(i), "b": float(i)}) for i in range(100)]
    repeated = [replace(base, ts=T0 + i, features={"a": float(i // 2), "b": 1.0}) for i in range(80)]
    assert _found(ExtractionDetector(), zigzag) == []
    assert _found(ExtractionDetector(), two_moving) == []
    assert [i for i, _ in _found(ExtractionDetector(), repeated)] == [40]  # repeats neither extend nor break


def test_ordinary_queries_between_sweep_steps_are_skipped_not_a_break() -> None:
    base = PredictionEvent("e", T0, "m", "v1", principal="p", features={"a": 0.0, "b": 1.0}, score=0.1)
    steps = [replace(base, ts=T0 + 10 * i, features={"a": float(i), "b": 1.0}) for i in range(40)]

    def ordinary(every: int, burst: int) -> list[PredictionEvent]:  # ``burst`` unrelated queries after every few steps
        return [replace(base, ts=T0 + 10 * i + 1 + j, features={"a": -5.0 * i - j - 1, "b": 7.0 + i + j})
                for i in range(2, 40, every) for j in range(burst)]

    interleaved = sorted(steps + ordinary(3, 1), key=lambda e: e.ts)
    found = _found(ExtractionDetector(), interleaved)
    assert [f.evidence["consecutive_queries"] for _, f in found] == ["20"]  # type: ignore[attr-defined]
    assert _found(ExtractionDetector(max_interleaved=3), sorted(steps + ordinary(3, 4), key=lambda e: e.ts)) == []


def test_flag_is_quiet_while_the_campaign_lasts_then_rearms() -> None:
    base = PredictionEvent("e", T0, "m", "v1", principal="p", features={"a": 0.0}, score=0.1)
    detector = ExtractionDetector(quiet_ms=1_000)
    sweep = [replace(base, ts=T0 + i * 10, features={"a": float(i)}) for i in range(200)]
    later = [replace(e, ts=e.ts + 10_000) for e in sweep]
    assert len(_found(detector, sweep)) == 1
    assert len(_found(detector, later)) == 1


def test_feedback_and_anonymous_predictions_hold_no_principal_state() -> None:
    detector = ExtractionDetector()
    detector.update(PredictionEvent("f", T0, "m", "v1", principal="p", label="yes"))
    detector.update(PredictionEvent("g", T0, "m", "v1", features={"a": 1.0}, score=0.5))
    assert detector.n_tracked_keys == 1  # the model's population share only




def probing_and_sweeping(n: int, principals: int, attack_at: tuple[int, int]) -> list[PredictionEvent]:
    """A prober's and a sweeper's traffic on one model, merged in time; every 13th caller anonymous, every
    97th prediction without a score (also the compiled loop's test stream: test_extraction_kernel)."""
    probing = prediction_traffic(seed=1, n=n, attacker="scraper", attack_at=attack_at[0])
    sweeping = prediction_traffic(seed=2, n=n, principals=principals, attacker="mapper", attack_at=attack_at[1],
                                  attack="sweep")
    events = sorted(probing + sweeping, key=lambda e: e.ts)
    for index in range(5, len(events), 13):
        events[index] = replace(events[index], principal=None)
    for index in range(8, len(events), 97):
        events[index] = replace(events[index], score=None)
    return events


@pytest.mark.parametrize("max_keys", [12, 100_000], ids=["evicting", "version by version"])
@pytest.mark.parametrize("sizes", [(7, 64), (1024,), (3000, 5, 17)])
def test_batches_find_what_single_events_find(sizes: tuple[int, ...], max_keys: int) -> None:
    # A prober flagged again and again (short quiet time), a sweep, anonymous callers, feedback and
    # predictions without a score; few keys (evicted within batches) or many (learned version by version).
    events = probing_and_sweeping(n=6000, principals=8, attack_at=(3000, 2000))
    for index in range(3, len(events), 31):
        events[index] = replace(events[index], features={}, label="yes")
    single = ExtractionDetector(quiet_ms=60_000, max_keys=max_keys)
    expected = _found(single, events)
    checks = {f.evidence["check"] for _, f in expected}  # type: ignore[attr-defined]
    assert checks == {"boundary_probing", "feature_sweep"}
    batched = ExtractionDetector(quiet_ms=60_000, max_keys=max_keys)
    assert in_batches(batched, events, sizes) == expected
    assert list(batched._models) == list(single._models) and list(batched._principals) == list(single._principals)


def test_a_batch_that_could_evict_is_learned_event_by_event() -> None:
    """A prediction can add two keys (its version's population and its principal): a batch of three new
    versions and principals evicts at max_keys 4, and must then go as one by one would (it once raised)."""
    def query(index: int, model: str, principal: str) -> PredictionEvent:
        return PredictionEvent(f"e{index}", T0 + index, model, "v1", principal=principal, features={"x": 1.0},
                               score=0.3)

    for events, max_keys in [([query(0, "m1", "p1"), query(1, "m2", "p2"), query(2, "m3", "p3")], 4),
                             ([query(0, "m1", "p1"), query(1, "m2", "p2"), query(2, "m1", "p3"),
                               query(3, "m2", "p1")], 5)]:
        single, batched = ExtractionDetector(max_keys=max_keys), ExtractionDetector(max_keys=max_keys)
        for event in events:
            single.update(event)
        batched.update_many(events)
        assert list(batched._models) == list(single._models)
        assert [(key, list(state.recent)) for key, state in batched._principals.items()] == \
            [(key, list(state.recent)) for key, state in single._principals.items()]
