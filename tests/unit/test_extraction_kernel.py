"""The compiled extraction loop (detectors/_extraction.c) against its Python twin, ``_py_learn_run``.

Both must find the same things and leave every bit of state the same (each principal's window,
near count, sweep and flag, each version's population share and count, both LRU orders), after
every batch and on the event-by-event path too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import extraction
from detectors._testing import T0, prediction_traffic
from detectors.events import PredictionEvent
from detectors.extraction import ExtractionDetector
from tests.unit.test_extraction import probing_and_sweeping

pytestmark = pytest.mark.unit


def _state(detector: ExtractionDetector) -> tuple[Any, ...]:
    principals = [(key, list(state.recent), state.recent.maxlen, state.near, state.last_features, state.last_ts,
                   vars(state.sweep), state.flagged_until) for key, state in detector._principals.items()]
    models = [(key, share.get(), count[0]) for key, (share, count) in detector._models.items()]
    return principals, models


def _run(batches: list[list[PredictionEvent]], compiled: bool, **parameters: Any) -> list[Any]:
    """Each batch's findings and the state after it; the type of the exception that ended the run, if any."""
    kernel = extraction.extraction_kernel
    assert kernel is not None, "detectors/_extraction.c was not compiled: run `make install`"
    extraction.extraction_kernel = kernel if compiled else None
    detector, steps = ExtractionDetector(**parameters), []
    try:
        for batch in batches:
            steps.append((detector.update_many(batch), _state(detector)))
    except Exception as exc:  # noqa: BLE001 - both loops must fail alike
        steps.append(type(exc))
    finally:
        extraction.extraction_kernel = kernel
    return steps


def _both(batches: list[list[PredictionEvent]], **parameters: Any) -> list[Any]:
    compiled = _run(batches, True, **parameters)
    assert compiled == _run(batches, False, **parameters)
    return compiled


def test_the_install_built_the_loop() -> None:
    assert extraction.extraction_kernel is not None, "detectors/_extraction.c was not compiled: run `make install`"


def _traffic() -> list[PredictionEvent]:
    return probing_and_sweeping(n=4000, principals=6, attack_at=(2000, 1500))


@pytest.mark.parametrize("size", [1, 64, 3000])
@pytest.mark.parametrize("max_keys", [12, 100_000], ids=["evicting", "version by version"])
def test_realistic_traffic_gives_the_same_findings_and_state(size: int, max_keys: int) -> None:
    events = _traffic()
    steps = _both([events[start:start + size] for start in range(0, len(events), size)], quiet_ms=60_000,
                  max_keys=max_keys)
    checks = {finding.evidence["check"] for found, _ in steps for _, finding in found}
    assert checks == {"boundary_probing", "feature_sweep"}


_values = st.sampled_from([0.0, 1.0, 2.0, 3.0, -1.0, 1, 2, float("nan"), 2.5])
_feature_maps = st.one_of(
    # mostly one feature moving and one fixed, so that sweeps run, extend, turn back and are interleaved
    st.fixed_dictionaries({"a": st.sampled_from([0.0, 1.0, 2.0, 3.0]), "b": st.sampled_from([0.0, 0.0, 0.0, 1.0])}),
    st.fixed_dictionaries({"a": _values, "b": _values}),
    st.fixed_dictionaries({"a": _values, "b": _values, "c": _values}),
    st.fixed_dictionaries({"b": _values, "a": _values}),
    st.just({}),
)
_scores = st.one_of(st.none(), st.sampled_from([0.5, 0.52, 0.56, 0.1, 0.9, 1, 0, 0.45, float("nan")]))


@st.composite
def _prediction(draw: st.DrawFn) -> PredictionEvent:
    return PredictionEvent(f"e{draw(st.integers(0, 9))}", T0 + 100 * draw(st.integers(0, 40)),
                           draw(st.sampled_from(["m1", "m2"])), "v1",
                           principal=draw(st.sampled_from([None, "p1", "p2", "p2", "p3"])),
                           features=draw(_feature_maps), score=draw(_scores))


@settings(max_examples=600, deadline=None)
@given(batches=st.lists(st.lists(_prediction(), max_size=30), max_size=8), window=st.integers(0, 6),
       min_predictions=st.integers(-1, 5), min_population=st.integers(0, 6), sweep_length=st.integers(1, 4),
       max_interleaved=st.integers(0, 2), max_keys=st.integers(1, 6), max_features=st.integers(1, 3),
       quiet_ms=st.sampled_from([0, 100, 300, 1_000]), min_fraction=st.sampled_from([0.2, 0.25, 0.5]),
       ratio=st.sampled_from([0.5, 2.5]), z_threshold=st.sampled_from([0.0, 1.0, 5.0]))
def test_random_streams_give_the_same_findings_and_state(batches: list[list[PredictionEvent]], **parameters: Any) -> None:
    """Tiny windows, bars and LRU budgets, so windows fill, signals fire, flags quiet them (times on a
    grid, so a flag ends exactly at a query) and keys are evicted within batches; repeated,
    reordered, NaN, int and missing features and scores; a window of 0 (both loops raise)."""
    _both(batches, **parameters)


class _Features(dict):  # type: ignore[type-arg]
    """A dict subclass: not the exact dict the compiled loop reads."""


def test_unusual_values_are_left_to_python_from_there_on() -> None:
    """A bool score, an int score and a dict subclass of features: the compiled loop stops before each."""
    events = prediction_traffic(seed=3, n=600, attacker="scraper", attack_at=100)
    events[50] = replace(events[50], score=True)  # type: ignore[arg-type]
    events[51] = replace(events[51], score=1)
    events[200] = replace(events[200], features=_Features(events[200].features))
    steps = _both([events[:100], events[100:300], events[300:]], min_predictions=20, min_population=50)
    assert any(found for found, _ in steps)


def test_a_score_beyond_a_double_raises_as_python_does() -> None:
    events = [PredictionEvent("e", T0, "m", "v1", principal="p", features={"a": 1.0}, score=1 << 2000)]
    assert _both([events]) == [OverflowError]


def _query(index: int, a: float, b: float, principal: str = "p", score: float = 0.1) -> PredictionEvent:
    return PredictionEvent(f"e{index}", T0 + 100 * index, "m", "v1", principal=principal, features={"a": a, "b": b},
                           score=score)


def test_a_sweep_resumed_after_too_many_interleaved_queries_extends_from_the_last_query() -> None:
    """A query moving ``b`` is tolerated (max_interleaved 1), the next moves ``a`` on but ``b`` stays moved:
    not a step from the sweep's anchor any more, but one from the last query, so the sweep extends."""
    steps = [(0, 0), (1, 0), (2, 0), (2, 7), (3, 7), (4, 7), (5, 7)]
    events = [_query(index, a, b) for index, (a, b) in enumerate(steps)]
    for size in (1, len(events)):
        result = _both([events[start:start + size] for start in range(0, len(events), size)], max_interleaved=1,
                       sweep_length=4)
        principals, _ = result[-1][1]
        assert principals[0][6]["length"] == 5  # steps 0->1->2, then (2,7)->3->4->5 extends it


def test_a_flag_ends_exactly_at_a_query() -> None:
    """Flagged at sweep step 3 and quiet for 300 ms after each later step: the query exactly 300 ms after
    the last step (an interleaved one, the sweep goes on) is learned into the population share again and
    flagged anew, as the flag holds only while ``ts < flagged_until``."""
    events = [_query(index, float(index), 0.0) for index in range(6)] + [_query(8, 9.0, 1.0)]
    steps = _both([events], sweep_length=3, quiet_ms=300, min_predictions=1_000)
    found, (_, models) = steps[-1]
    assert [position for position, _ in found] == [3, 6]
    assert models[0][2] == 5  # not the two steps while flagged; the last query again


def test_numpy_scores_learned_in_python_leave_state_the_compiled_loop_reads() -> None:
    """A numpy score is left to Python, whose near count then becomes a numpy int; the compiled loop
    reads such counts by their __index__ rather than refusing them."""
    import numpy as np

    events = prediction_traffic(seed=6, n=300)
    events[10] = replace(events[10], score=np.float64(0.5))  # type: ignore[arg-type]
    steps = _both([events[:100], events[100:]])
    assert all(isinstance(step, tuple) for step in steps)


class _Restless:
    """A feature value whose comparison changes the map it sits in (keys change, size stays)."""

    def __init__(self, owner: dict[str, Any]) -> None:
        self.owner = owner

    def __ne__(self, other: object) -> bool:
        self.owner.pop("k1", None)
        self.owner["k3"] = 0.0
        return True


def test_a_feature_map_changed_by_a_comparison_fails_as_in_python() -> None:
    def batches() -> list[list[PredictionEvent]]:  # afresh for each run: the comparison changes the map
        first = PredictionEvent("e0", T0, "m", "v1", principal="p", features={"k1": 1.0, "k2": 2.0}, score=0.1)
        features: dict[str, Any] = {"k1": 1.0}
        features["k2"] = _Restless(features)
        return [[first], [PredictionEvent("e1", T0 + 1, "m", "v1", principal="p", features=features, score=0.1)]]

    compiled = _run(batches(), True)
    assert compiled == _run(batches(), False)
    assert compiled[-1] is RuntimeError  # "dictionary keys changed during iteration"


class _PrincipalFirst(PredictionEvent):
    """Features that cannot be read: the loops must not read them for an event without a principal."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if name == "features":
            raise AttributeError("features")
        return super().__getattribute__(name)


def test_fields_are_read_in_the_python_loops_order() -> None:
    steps = _both([[_PrincipalFirst("e0", T0, "m", "v1", principal=None, score=0.1)]])
    assert steps[-1][1][1] == [(("m", "v1"), 0.0, 1)]
