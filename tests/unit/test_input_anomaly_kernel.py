"""The compiled input-anomaly loops (detectors/_input_anomaly.c) against their Python twins.

``judge`` against ``_py_judge_rows`` and ``aggregate`` against ``_py_aggregate``: the same findings
and the same state after every batch (each version's counts and thresholder, each principal's
window, the base rate), on the event-by-event path and on batches.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import input_anomaly
from detectors._testing import T0, anomaly_stream
from detectors.events import PredictionEvent
from detectors.input_anomaly import InputAnomalyDetector

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def compiled_at_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector takes the Python loops for runs of fewer than 8: here the compiled ones run at any size."""
    monkeypatch.setattr(input_anomaly, "COMPILED_FROM", 1)


def _state(detector: InputAnomalyDetector) -> tuple[Any, ...]:
    versions = [(key, state.seen, state.learned, state.judged, state.flagged,
                 None if state.quantile is None else state.quantile.get()) for key, state in detector._states.items()]
    principals = [(name, [list(bucket) for bucket in state.buckets], state.events, state.anomalies, state.reported)
                  for name, state in detector._principals.items()]
    return versions, principals, detector._judged, detector._flagged


def _run(batches: list[list[PredictionEvent]], compiled: bool, **parameters: Any) -> list[Any]:
    """Each batch's findings and the state after it; the type of an exception that ended the run, and the
    state it left."""
    kernel = input_anomaly.judge_kernel
    assert kernel is not None, "detectors/_input_anomaly.c was not compiled: run `make install`"
    input_anomaly.judge_kernel = kernel if compiled else None
    detector, steps = InputAnomalyDetector(**parameters), []
    try:
        for batch in batches:
            steps.append((detector.update_many(batch), _state(detector)))
    except Exception as exc:  # noqa: BLE001 - both loops must fail alike, leaving the same state
        steps.append((type(exc), _state(detector)))
    finally:
        input_anomaly.judge_kernel = kernel
    return steps


def _both(batches: list[list[PredictionEvent]], **parameters: Any) -> list[Any]:
    compiled = _run(batches, True, **parameters)
    assert compiled == _run(batches, False, **parameters)
    return compiled


def test_the_install_built_the_loops() -> None:
    assert input_anomaly.judge_kernel is not None, "detectors/_input_anomaly.c was not compiled: run `make install`"


@pytest.mark.parametrize("size", [1, 97, 2_000])
def test_an_odd_principal_is_found_alike(size: int) -> None:
    events = anomaly_stream(seed=4, n=8_000, odd_principal="svc-7", odd_from=5_000)
    for index in range(3, len(events), 17):
        events[index] = replace(events[index], principal=None)
    steps = _both([events[start:start + size] for start in range(0, len(events), size)], warmup=64, calibration=300,
                  window_size=64, min_anomalies=5)
    assert [finding.principal for found, _ in steps for _, finding in found] == ["svc-7"]


# several events per minute, minutes leave windows; times before 1970 too (minutes are floored)
_grid_ts = st.one_of(st.integers(0, 40).map(lambda step: T0 + 20_000 * step),
                     st.integers(-20, 20).map(lambda step: 20_000 * step + 7))


@st.composite
def _prediction(draw: st.DrawFn) -> PredictionEvent:
    odd = draw(st.booleans())
    value = st.floats(5.0, 9.0) if odd else st.floats(-1.0, 1.0)
    return PredictionEvent(f"e{draw(st.integers(0, 99))}", draw(_grid_ts), draw(st.sampled_from(["m1", "m2"])), "v1",
                           principal=draw(st.sampled_from([None, "p1", "p2", "p3"])),
                           features={"a": draw(value), "b": draw(value)}, score=0.5)


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.lists(_prediction(), max_size=40), max_size=6), learn_every=st.integers(1, 3),
       window_ms=st.sampled_from([60_000, 120_000]), min_anomalies=st.integers(0, 3),
       max_principals=st.integers(1, 4), max_keys=st.integers(1, 3))
def test_random_streams_give_the_same_findings_and_state(batches: list[list[PredictionEvent]],
                                                         **parameters: Any) -> None:
    """Tiny warm-up, calibration and trees' windows, so thresholds, learning and window swaps happen
    within batches; few principals and versions kept, minutes leaving windows, odd inputs."""
    _both(batches, warmup=4, calibration=6, window_size=5, n_trees=3, height=3, min_rate=0.1, rate_factor=1.0,
          min_z=0.5, **parameters)


def test_a_time_that_is_not_an_int_is_left_to_python() -> None:
    events = anomaly_stream(seed=5, n=1_200)
    events[900] = replace(events[900], ts=float(events[900].ts))  # type: ignore[arg-type]
    _both([events[:600], events[600:]], warmup=64, calibration=300)



def _aggregated(events: list[tuple[int, bool]], **parameters: Any) -> list[Any]:
    """``_aggregate`` over hand-made verdicts (time, anomalous) of principal p, one batch per verdict,
    compiled and in Python: the findings and the window after each (asserted equal)."""
    verdicts = [(index, anomalous, PredictionEvent(f"e{index}", ts, "m", "v1", principal="p", features={"a": 1.0}))
                for index, (ts, anomalous) in enumerate(events)]
    kernel = input_anomaly.judge_kernel
    results = []
    for compiled in (True, False):
        input_anomaly.judge_kernel = kernel if compiled else None
        try:
            detector, steps = InputAnomalyDetector(**parameters), []
            for verdict in verdicts:
                steps.append((detector._aggregate([verdict]), _state(detector)))
        finally:
            input_anomaly.judge_kernel = kernel
        results.append(steps)
    assert results[0] == results[1]
    return results[0]


def test_a_minute_leaving_the_window_exactly_is_dropped() -> None:
    """The oldest minute is exactly the window's length behind the current one: it leaves the window,
    so the event takes the general path even though it falls in the newest minute."""
    minute = 60_000
    steps = _aggregated([(0, False), (minute, False), (2 * minute, False), (2 * minute + 1, False)], window_ms=2 * minute)
    assert [bucket[0] for bucket in steps[-1][1][1][0][1]] == [1, 2]


def test_a_window_at_exactly_min_anomalies_is_judged() -> None:
    steps = _aggregated([(index * 1_000, True) for index in range(3)], min_anomalies=3, min_rate=0.1, rate_factor=1.0,
                        min_z=0.0)
    assert [len(found) for found, _ in steps] == [0, 0, 1]


def test_minutes_before_1970_are_floored() -> None:
    """Out of order around 0 ms: -19,993 ms is minute -1, not minute 0 (where +7 ms is)."""
    steps = _aggregated([(-59_993, False), (7, False), (-19_993, False)], window_ms=600_000)
    assert [bucket[:2] for bucket in steps[-1][1][1][0][1]] == [[-1, 1], [0, 1], [-1, 1]]


def test_a_float_time_learned_in_python_leaves_buckets_the_compiled_loop_takes() -> None:
    """A float time is left to Python, which files a float minute in the principal's window; later
    batches must take the general path for that bucket rather than refuse it."""
    events = anomaly_stream(seed=5, n=1_500)
    odd = next(index for index in range(900, 1_000) if events[index].principal == events[1_000].principal)
    events[odd] = replace(events[odd], ts=float(events[odd].ts))  # type: ignore[arg-type]
    steps = _both([events[:600], events[600:1_000], *(events[start:start + 30] for start in range(1_000, 1_500, 30))],
                  warmup=64, calibration=300)
    assert all(isinstance(step, tuple) for step in steps)


@pytest.mark.parametrize("setting", [{"calibration": 300.0}, {"learn_every": 4.0}, {"window_ms": 600_000.0},
                                     {"calibration": 10**19}, {"window_ms": 10**30}, {"min_anomalies": 10**19}])
def test_settings_the_compiled_loops_cannot_take_are_left_to_python(setting: dict[str, Any]) -> None:
    events = anomaly_stream(seed=6, n=1_000, odd_principal="svc-3", odd_from=700)
    parameters = {"warmup": 64, "calibration": 300, **setting}
    _both([events[:500], events[500:]], **parameters)


def test_counts_handed_to_python_stay_in_the_batch_when_it_then_fails() -> None:
    """The base rate's counts go to Python with the verdicts it takes over, not onto the detector: an
    exception later in the batch leaves the detector's counts as the Python loop would."""
    events = anomaly_stream(seed=7, n=1_000)
    events[800] = replace(events[800], ts=float(events[800].ts))  # type: ignore[arg-type]
    events[900] = replace(events[900], principal=["unhashable"])  # type: ignore[arg-type]
    steps = _both([events[:600], events[600:]], warmup=64, calibration=300)
    assert steps[-1][0] is TypeError
