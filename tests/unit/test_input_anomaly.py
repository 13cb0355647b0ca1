"""Input anomaly: one odd source is one finding; anomalous events are not learned; healthy traffic is quiet."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
from river import anomaly

from detectors._halfspace import SMALL_BATCH, HalfSpaceForest, _river_splits
from detectors._testing import anomaly_stream
from detectors.events import PredictionEvent
from detectors.findings import Finding
from detectors.input_anomaly import InputAnomalyDetector, _Scaler

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


def test_forest_scores_exactly_as_river_half_space_trees() -> None:
    """The array forest is River's ``HalfSpaceTrees``: same trees, same scores to the bit, across window swaps.

    Each shape twice: the second forest takes its splits from ``_river_splits``'s memory."""
    names = ["a", "b", "c"]
    _river_splits.cache_clear()
    for n_trees, height, window_size in [(10, 8, 250), (3, 3, 7), (2, 0, 4)] * 2:
        rng = random.Random(height)
        river = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size,
                                       limits={name: (0.0, 1.0) for name in names}, seed=42)
        forest = HalfSpaceForest(names, n_trees, height, window_size, seed=42)
        for _ in range(120):
            rows = np.array([[min(1.0, max(0.0, rng.gauss(0.5, 0.25))) for _ in names]
                             for _ in range(rng.choice([1, 3, SMALL_BATCH, 40]))])
            leaves = forest.leaves(rows)
            expected = [float(river.score_one(dict(zip(names, row))))  # type: ignore[no-untyped-call]
                        for row in rows.tolist()]
            assert forest.scores(leaves).tolist() == expected
            learned = [index for index in range(len(rows)) if rng.random() < 0.8]
            forest.learn(leaves[learned])
            for index in learned:
                river.learn_one(dict(zip(names, rows[index].tolist())))  # type: ignore[no-untyped-call]
    assert _river_splits.cache_info().hits == 3


@pytest.mark.parametrize("limits", [{"a": (-2.0, 3.0), "b": (0.1, 0.7)}, {"b": (0.1, 0.7)}])
def test_scaling_follows_the_per_feature_formula(limits: dict[str, tuple[float, float]]) -> None:
    """Missing -> mid-range, non-finite -> top, then ``min(1, max(0, (value - low) / (high - low)))``."""
    vectors: list[dict[str, float]] = [
        {"a": 0.3, "b": 0.5}, {"a": -5.0, "b": 9.0}, {"b": 0.2}, {"a": math.inf, "b": -math.inf},
        {"a": math.nan, "b": 1e308}, {"a": -1e308, "extra": 1.0}, {"a": 0, "b": True},
    ]

    def by_formula(vector: dict[str, float]) -> list[float]:
        scaled = []
        for name, (low, high) in limits.items():
            value = vector.get(name, (low + high) / 2)
            value = float(value) if math.isfinite(value) else high
            scaled.append(min(1.0, max(0.0, (value - low) / (high - low))))
        return scaled

    scaler = _Scaler.from_limits(limits)
    assert scaler.rows(vectors).tolist() == [by_formula(vector) for vector in vectors]
    assert scaler.rows(vectors[:1]).tolist() == [by_formula(vectors[0])]


def _bursty_stream() -> list[PredictionEvent]:
    """``svc-3`` sends odd inputs every other 25 minutes from event 6000: reported, re-armed, reported again."""
    odd = anomaly_stream(seed=7, n=24_000, odd_principal="svc-3", n_principals=5)
    calm = anomaly_stream(seed=8, n=24_000, n_principals=5)
    return [calm[index] if index < 3_000 or (index // 3_000) % 2 else odd[index] for index in range(24_000)]


def _in_micro_batches(detector: InputAnomalyDetector, events: list[PredictionEvent],
                      rng: random.Random) -> list[tuple[int, Finding]]:
    found, start = [], 0
    while start < len(events):
        size = rng.choice([1, 2, 7, 64, 500, 1_024, 3_000])
        found += [(start + position, f) for position, f in detector.update_many(events[start:start + size])]
        start += size
    return found


def _learned_state(detector: InputAnomalyDetector) -> list[tuple[object, ...]]:
    return [(key, state.seen, state.learned, state.judged, state.flagged, state.quantile and state.quantile.get())
            for key, state in detector._states.items()]


@pytest.mark.parametrize("settings", [
    {},
    # small trees and windows: many swaps inside one batch; two slots for three model versions: evictions
    {"warmup": 10, "calibration": 30, "window_size": 9, "n_trees": 3, "height": 3, "max_keys": 2, "min_anomalies": 3},
])
def test_micro_batches_learn_and_find_what_single_events_do(settings: dict[str, int]) -> None:
    events = [replace(event, model_id=f"m{(index // 150) % 3}") if settings else event
              for index, event in enumerate(_bursty_stream())]
    one_by_one, batched = InputAnomalyDetector(**settings), InputAnomalyDetector(**settings)
    expected = _found(one_by_one, events)
    assert _in_micro_batches(batched, events, random.Random(1)) == expected
    assert _learned_state(batched) == _learned_state(one_by_one)
    assert (batched._judged, batched._flagged) == (one_by_one._judged, one_by_one._flagged) > (0, 0)
    if not settings:
        assert [(index, f.principal) for index, f in expected] == [(6381, "svc-3"), (12960, "svc-3"), (19080, "svc-3")]


def test_the_thresholder_is_called_past_rivers_wrapper_only_once_it_has_learned() -> None:
    from river import stats

    from detectors.input_anomaly import _quantile_methods

    wrapped, direct = stats.Quantile(0.9), stats.Quantile(0.9)
    get, update = _quantile_methods(direct)
    assert get() is None and get.__self__ is direct  # before its first update: the wrapper, which answers None
    rng = random.Random(3)
    for _ in range(500):
        value = rng.lognormvariate(0, 1)
        wrapped.update(value)
        update(value)
        get, update = _quantile_methods(direct)
    assert get.__self__ is direct._quantile and get() == wrapped.get() == direct.get()


def test_a_feature_constant_during_warm_up_at_a_large_magnitude_scales_to_zero_not_nan() -> None:
    """Its limits have no width left (the margin rounds away), so its warm-up value scales to 0/0: clipped to
    0.0 like Python's min(1.0, max(0.0, x)), as the trees expect (NaN would take the other branch everywhere)."""
    from detectors.input_anomaly import _robust_limits

    scaler = _Scaler.from_limits({"account_ms": _robust_limits([1.7e12] * 300), "x": _robust_limits([0.0, 1.0])})
    assert scaler.span[0] == 0.0
    rows = scaler.rows([{"account_ms": 1.7e12, "x": 0.5}, {"account_ms": math.nan, "x": 0.5},
                        {"account_ms": 1.6e12, "x": 2.0}])
    with np.errstate(divide="ignore", invalid="ignore"):
        unclipped = (np.array([[1.7e12, 0.5], [scaler.high[0], 0.5], [1.6e12, 2.0]]) - scaler.low) / scaler.span
    expected = [[min(1.0, max(0.0, value)) for value in row] for row in unclipped.tolist()]
    assert rows.tolist() == expected and not np.isnan(rows).any()
