"""The compiled feedback join (detectors/_join.c) against its Python twin, ``FeedbackJoin._py_feed``.

Both must give the same matches and leave the join in the same state (what it remembers, in
which order, its watermark, its oldest and when that expires, its counts) after every batch,
or the label detectors would find different things on installed machines.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import feedback
from detectors.events import AccessEvent, PredictionEvent
from detectors.feedback import SAFE_TS, FeedbackJoin, Matched

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def compiled_at_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """``feed`` takes the Python loop for batches of fewer than 8: here the compiled one runs at any size."""
    monkeypatch.setattr(feedback, "COMPILED_FROM", 1)


def _state(join: FeedbackJoin) -> tuple[Any, ...]:
    return list(join._pending.items()), join._watermark, join._keep_until, join._front_id, join.counts


def _fed_both(batches: list[list[object]], horizon_ms: int, max_entries: int) -> tuple[FeedbackJoin, FeedbackJoin]:
    compiled, python = FeedbackJoin(horizon_ms, max_entries), FeedbackJoin(horizon_ms, max_entries)
    for batch in batches:
        assert compiled.feed(batch) == python._py_feed(batch)
        assert _state(compiled) == _state(python)
    return compiled, python


def test_the_install_built_the_join() -> None:
    assert feedback.join_kernel is not None, "detectors/_join.c was not compiled: run `make install`"


_ids = st.sampled_from([f"e{index}" for index in range(12)])
_labels = st.sampled_from(["positive", " Positive ", "negative", "1", "no", "TRUE", "fraud", "Fraud "])
_scores = st.one_of(st.none(), st.floats(0, 1), st.integers(0, 1))


@st.composite
def _event(draw: st.DrawFn) -> object:
    event_id, ts = draw(_ids), draw(st.integers(0, 5_000))
    kind = draw(st.sampled_from(["prediction", "prediction", "feedback", "feedback", "labelled", "access"]))
    if kind == "access":
        return AccessEvent(event_id, ts, "alice", "download", "model", "m")
    if kind == "feedback":  # a label and no features
        return PredictionEvent(event_id, ts, "m", "v1", label=draw(_labels))
    features = {"x": 1.0} if kind == "labelled" or draw(st.booleans()) else {}
    return PredictionEvent(event_id, ts, "m", "v1", features=features, score=draw(_scores),
                           prediction=draw(st.one_of(st.none(), _labels)),
                           label=draw(_labels) if kind == "labelled" else None)


@settings(max_examples=500, deadline=None)
@given(batches=st.lists(st.lists(_event(), max_size=40), max_size=8), horizon_ms=st.integers(-10, 3_000),
       max_entries=st.integers(0, 10))
def test_feed_is_the_python_loop(batches: list[list[object]], horizon_ms: int, max_entries: int) -> None:
    """Repeated ids, labels before, after and without their prediction, times out of order, a tiny
    horizon and capacity (eviction and expiry at almost every step), other event types."""
    _fed_both(batches, horizon_ms, max_entries)


@pytest.mark.parametrize("horizon_ms, max_entries", [(90_000, 400), (10**9, 60)])  # expiring; evicting
def test_a_realistic_stream_matches_the_python_loop(horizon_ms: int, max_entries: int) -> None:
    from detectors._testing import labeled_stream

    events: list[object] = list(labeled_stream(seed=3, n=3_000, feedback_delay_ms=60_000))
    batches = [events[start:start + 257] for start in range(0, len(events), 257)]
    compiled, _ = _fed_both(batches, horizon_ms, max_entries)
    assert compiled.counts.joined > 100 and compiled.counts.expired + compiled.counts.evicted > 100


def test_a_time_beyond_the_safe_range_moves_the_join_to_python_for_good() -> None:
    early = [PredictionEvent("a", 10, "m", "v1", features={"x": 1.0}), PredictionEvent("b", 11, "m", "v1")]
    wide = PredictionEvent("c", SAFE_TS, "m", "v1", features={"x": 1.0})
    later = [PredictionEvent("a", 20, "m", "v1", label="positive"), PredictionEvent("c", SAFE_TS + 5, "m", "v1",
                                                                                    label="negative")]
    compiled, python = _fed_both([early, [early[0], wide, *later], later], 1_000, 100)
    assert compiled._wide and compiled.counts.joined >= 1


def test_a_wide_watermark_from_python_keeps_the_compiled_loop_out() -> None:
    join = FeedbackJoin()
    join.match(PredictionEvent("x", -(1 << 70), "m", "v1", label="positive"))  # only a watermark moves
    join.observe(PredictionEvent("y", 1 << 70, "m", "v1", features={"x": 1.0}))
    assert join._wide
    assert join.feed([PredictionEvent("y", 1 << 70, "m", "v1", label="no")])[0].feedback_ts == 1 << 70


def test_matched_is_a_real_matched() -> None:
    prediction = PredictionEvent("a", 10, "m", "v1", features={"x": 1.0}, score=0.7)
    matches = FeedbackJoin().feed([prediction, PredictionEvent("a", 12, "m", "v1", label=" No ")])
    assert matches == [Matched(1, prediction, " No ", 12, 1, 0, 0, True)]
    assert type(matches[0]) is Matched and matches[0].error is True and matches[0].prediction is prediction


class _Labelled(PredictionEvent):
    """A subclass: its fields are looked up as attributes, not read from the base's slots."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        return "fraud" if name == "label" else super().__getattribute__(name)


def test_subclasses_are_read_through_their_attributes() -> None:
    events: list[object] = [PredictionEvent("a", 1, "m", "v1", features={"x": 1.0}, score=0.9),
                            _Labelled("a", 2, "m", "v1", label="positive")]
    compiled, _ = _fed_both([events], 1_000, 10)
    assert compiled.counts.joined == 1


@pytest.mark.parametrize("bad", [
    PredictionEvent("a", "soon", "m", "v1", features={"x": 1.0}),  # type: ignore[arg-type]
    PredictionEvent("a", 3, "m", "v1", label=7),  # type: ignore[arg-type]
])
def test_bad_fields_raise_as_python_does_and_leave_the_same_state(bad: PredictionEvent) -> None:
    good = PredictionEvent("a", 1, "m", "v1", features={"x": 1.0}, score=0.2)
    compiled, python = FeedbackJoin(), FeedbackJoin()
    with pytest.raises((TypeError, AttributeError)) as raised_compiled:
        compiled.feed([good, bad])
    with pytest.raises((TypeError, AttributeError)) as raised_python:
        python._py_feed([good, bad])
    assert type(raised_compiled.value) is type(raised_python.value)
    assert _state(compiled) == _state(python)


def test_float_times_and_settings_are_left_to_python() -> None:
    prediction = PredictionEvent("a", 1, "m", "v1", features={"x": 1.0}, score=0.9)
    late = PredictionEvent("a", 2.5, "m", "v1", label="1")  # type: ignore[arg-type]
    _fed_both([[prediction, late]], 1_000, 10)
    compiled, python = FeedbackJoin(3.6e6, 10), FeedbackJoin(3.6e6, 10)  # type: ignore[arg-type]
    assert compiled.feed([prediction, late]) == python._py_feed([prediction, late])


class _Proxy:
    """Passes isinstance(proxy, PredictionEvent) through ``__class__``, as a mock or a lazy proxy does."""

    def __init__(self, event: PredictionEvent) -> None:
        object.__setattr__(self, "_event", event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._event, name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # type: ignore[override]
        return PredictionEvent


def test_what_passes_isinstance_is_fed_as_python_feeds_it() -> None:
    events: list[object] = [_Proxy(PredictionEvent("a", 1, "m", "v1", features={"x": 1.0}, score=0.9)),
                            PredictionEvent("a", 2, "m", "v1", label="1")]
    assert len(FeedbackJoin().feed(events)) == len(FeedbackJoin()._py_feed(events)) == 1


def test_python_code_that_empties_the_batch_midway_is_survived() -> None:
    """An event_id whose hash empties the list being fed: the loop reads the list's size anew each step."""
    events: list[object] = []

    class _Id(str):
        def __hash__(self) -> int:
            events.clear()
            return str.__hash__(self)

    made = [PredictionEvent(_Id("e0") if index == 0 else f"e{index}", index, "m", "v1", features={"x": 1.0})
            for index in range(50)]
    events[:] = made
    compiled = FeedbackJoin()
    assert compiled.feed(events) == [] and compiled.n_pending == 1
    events[:] = made
    python = FeedbackJoin()
    assert python._py_feed(events) == [] and python.n_pending == 1
