"""The feedback join: matches labels by event_id, forgets by event-time horizon and by size."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors._testing import exploding_keys, labeled_stream
from detectors.events import PredictionEvent
from detectors.feedback import FeedbackJoin

pytestmark = pytest.mark.unit


def _prediction(event_id: str, ts: int, prediction: str | None = "positive", score: float | None = 0.9) -> PredictionEvent:
    return PredictionEvent(event_id, ts, "m", "v1", features={"x": 1.0}, prediction=prediction, score=score,
                           segment={"region": "EU"})


def _feedback(event_id: str, ts: int, label: str) -> PredictionEvent:
    return PredictionEvent(event_id, ts, "m", "v1", label=label)


def test_feedback_joins_its_prediction_and_knows_if_it_was_wrong() -> None:
    join = FeedbackJoin()
    assert join.observe(_prediction("e1", 1_000)) is None
    joined = join.observe(_feedback("e1", 5_000, "negative"))
    assert joined is not None and joined.is_error and joined.prediction.segment == {"region": "EU"}
    assert join.counts.joined == 1 and join.n_pending == 0


def test_without_a_class_the_score_decides() -> None:
    join = FeedbackJoin()
    join.observe(_prediction("e1", 1_000, prediction=None, score=0.7))
    joined = join.observe(_feedback("e1", 2_000, "true"))
    assert joined is not None and not joined.is_error


def test_feedback_past_the_horizon_is_not_joined() -> None:
    join = FeedbackJoin(horizon_ms=10_000)
    join.observe(_prediction("old", 0))
    join.observe(_prediction("new", 20_000))  # the watermark moves past old's horizon: it is forgotten
    assert join.n_pending == 1
    assert join.observe(_feedback("old", 21_000, "positive")) is None
    assert (join.counts.missed, join.counts.expired) == (1, 1)


def test_late_feedback_for_a_still_remembered_prediction_counts_as_expired() -> None:
    join = FeedbackJoin(horizon_ms=10_000)
    join.observe(_prediction("e1", 0))
    assert join.observe(_feedback("e1", 15_000, "positive")) is None
    assert join.counts.expired == 1


def test_unknown_feedback_is_a_miss() -> None:
    join = FeedbackJoin()
    assert join.observe(_feedback("never-seen", 1, "positive")) is None
    assert join.counts.missed == 1


def test_memory_stays_bounded_when_event_ids_explode() -> None:
    join = FeedbackJoin(max_entries=1_000)
    for event in exploding_keys(PredictionEvent, 50_000):
        assert isinstance(event, PredictionEvent)
        join.observe(event)
    assert join.n_pending == 1_000 and join.counts.evicted == 49_000


def test_seeded_stream_joins_every_label() -> None:
    join = FeedbackJoin()
    events = labeled_stream(seed=1, n=5_000)
    joined = [j for event in events if (j := join.observe(event))]
    assert len(joined) == sum(event.is_feedback for event in events) == join.counts.joined
    assert join.counts.missed == 0 and join.clone().n_pending == 0
    assert replace(events[0]).event_id == events[0].event_id


def test_an_older_prediction_behind_a_labelled_oldest_one_still_expires() -> None:
    # Out of event-time order: "b" is older than "a" but remembered after it. Once "a" is
    # labelled, "b" is the oldest and must go when the horizon passes it.
    join = FeedbackJoin(horizon_ms=1_000)
    join.observe(_prediction("a", 100))
    join.observe(_prediction("b", 0))
    assert join.observe(_feedback("a", 200, "positive")) is not None
    join.observe(_prediction("c", 1_050))  # the horizon now starts at 50
    assert join.n_pending == 1 and join.counts.expired == 1


def test_a_prediction_remembered_again_counts_as_the_newest() -> None:
    join = FeedbackJoin(horizon_ms=1_000)
    join.observe(_prediction("a", 100))
    join.observe(_prediction("b", 0))
    join.observe(_prediction("a", 110))  # "a" again: now behind "b", which is the oldest
    join.observe(_prediction("c", 1_050))
    assert join.n_pending == 2 and join.counts.expired == 1
    assert join.observe(_feedback("b", 1_060, "positive")) is None and join.counts.missed == 1
