"""``detectors.batch.Batch``: what the detectors of one event type derive from a micro-batch, derived once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.batch import Batch
from detectors.events import AccessEvent, PredictionEvent
from detectors.feedback import FeedbackJoin

pytestmark = pytest.mark.unit


def _prediction(event_id: str, ts: int, version: str = "v1", **fields) -> PredictionEvent:
    fields.setdefault("features", {"b": float(ts), "a": 1.0})
    return PredictionEvent(event_id, ts, "m", version, **fields)


def _events() -> list:
    return [
        _prediction("e1", 1),
        _prediction("e2", 2, "v2"),
        _prediction("e1", 3, features={}, label="yes"),  # feedback for e1
        AccessEvent("x", 4, "p", "download", "model", "m"),
        _prediction("e3", 5, features={}),  # a prediction without features
        _prediction("e4", 6),
    ]


def test_predictions_are_grouped_by_version_in_first_seen_order_with_positions() -> None:
    batch = Batch(_events())
    grouped = {key: (positions, [event.event_id for event in events])
               for key, (positions, events) in batch.predictions_by_version().items()}
    assert grouped == {("m", "v1"): ([0, 4, 5], ["e1", "e3", "e4"]), ("m", "v2"): ([1], ["e2"])}
    with_features = {key: positions for key, (positions, _) in batch.predictions_with_features().items()}
    assert with_features == {("m", "v1"): [0, 5], ("m", "v2"): [1]}
    assert batch.predictions_by_version() is batch.predictions_by_version()  # derived once


def test_a_join_is_fed_once_however_many_detectors_ask() -> None:
    join = FeedbackJoin()
    batch = Batch(_events())
    matches = batch.matches(join)
    assert batch.matches(join) is matches and [match.position for match in matches] == [2]
    assert join.counts.joined == 1 and join.n_pending == 3  # e1 matched; e2, e3, e4 wait


def test_a_feature_table_is_made_once_per_version_and_names_and_is_read_only() -> None:
    batch = Batch(_events())
    table = batch.feature_table(("m", "v1"), ("a", "b"))
    assert table.tolist() == [[1.0, 1.0], [1.0, 6.0]]
    assert batch.feature_table(("m", "v1"), ("a", "b")) is table
    with pytest.raises(ValueError):
        table[0, 0] = 2.0
    assert batch.feature_table(("m", "v1"), ("b",)).tolist() == [[1.0], [6.0]]
    with pytest.raises(KeyError):
        batch.feature_table(("m", "v1"), ("a", "c"))


class _Relabelled(PredictionEvent):
    """A subclass: its fields are looked up, not read from the base's slots."""

    __slots__ = ()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["m1", "m2", "m3"]), st.sampled_from(["v1", "v2"]),
                          st.sampled_from(["prediction", "featureless", "feedback", "labelled", "access", "sub"])),
                max_size=40))
def test_the_compiled_grouping_is_the_python_one(shapes: list[tuple[str, str, str]]) -> None:
    events: list[object] = []
    for index, (model, version, kind) in enumerate(shapes):
        features = {} if kind in ("featureless", "feedback") else {"x": 1.0}
        label = "yes" if kind in ("feedback", "labelled") else None
        if kind == "access":
            events.append(AccessEvent(f"a{index}", index, "p", "download", "model", model))
        else:
            cls = _Relabelled if kind == "sub" else PredictionEvent
            # a fresh copy of the strings half the time: consecutive events need not share them
            events.append(cls(f"e{index}", index, model if index % 2 else "".join(model), version, features=features,
                              label=label))
    compiled, python = Batch(events), Batch(events)  # type: ignore[arg-type]
    assert compiled._group() == python._py_group()
    assert list(compiled._group()) == list(python._py_group())
    assert compiled._featureless == python._featureless


def test_python_code_that_empties_the_batch_midway_is_survived() -> None:
    """A features mapping whose truth test empties the event list: each event is held while read."""
    events: list[object] = []

    class _Features(dict):  # type: ignore[type-arg]
        def __len__(self) -> int:
            events.clear()
            return 1

    events[:] = [PredictionEvent(f"e{index}", index, "m", "v", features=_Features(x=1.0)) for index in range(20)]
    groups = Batch(events)._group()  # type: ignore[arg-type]
    assert {key: positions for key, (positions, _) in groups.items()} == {("m", "v"): [0]}
