"""A bounded, event-time join of delayed feedback (labels) to the predictions they judge.

Feedback is a ``PredictionEvent`` with a ``label`` and no features, carrying the
``event_id`` of an earlier prediction. ``FeedbackJoin`` remembers recent predictions by
``event_id`` for at most ``horizon_ms`` of event time and at most ``max_entries`` of them
(oldest forgotten first), so memory stays bounded however many predictions never get a
label. Each detector that needs labels owns its own join: detectors run independently.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping

from detectors.events import PredictionEvent

POSITIVE_LABELS = frozenset({"positive", "1", "true", "yes"})
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class PendingPrediction:
    """What the join keeps of one prediction until its label arrives."""

    ts: int
    model_id: str
    model_version: str
    segment: Mapping[str, str]
    prediction: str | None
    score: float | None


@dataclass(frozen=True, slots=True)
class JoinedPrediction:
    """A prediction and its ground truth, matched by ``event_id``."""

    prediction: PendingPrediction
    label: str
    feedback_ts: int

    @property
    def is_error(self) -> bool:
        """The prediction disagrees with the label (score >= 0.5 means positive when there is no class)."""
        if self.prediction.prediction is not None:
            return self.prediction.prediction.strip().lower() != self.label.strip().lower()
        score = self.prediction.score if self.prediction.score is not None else 0.0
        return (score >= 0.5) != (self.label.strip().lower() in POSITIVE_LABELS)


@dataclass
class JoinCounts:
    """How the join has fared: labels matched, labels without a prediction, predictions forgotten."""

    joined: int = 0
    missed: int = 0
    expired: int = 0
    evicted: int = 0


@dataclass
class FeedbackJoin:
    """Joins feedback to predictions by ``event_id`` within ``horizon_ms`` of event time.

    >>> from detectors._testing import labeled_stream
    >>> join = FeedbackJoin(horizon_ms=3_600_000, max_entries=1_000)
    >>> joined = [j for e in labeled_stream(seed=1, n=2_000) if (j := join.observe(e))]
    >>> len(joined), join.counts.missed, join.n_pending <= 1_000
    (574, 0, True)
    """

    horizon_ms: int = 7 * DAY_MS
    max_entries: int = 200_000
    counts: JoinCounts = field(default_factory=JoinCounts)
    _pending: OrderedDict[str, PendingPrediction] = field(default_factory=OrderedDict)
    _watermark: int = 0

    @property
    def n_pending(self) -> int:
        """Predictions currently waiting for a label (never above ``max_entries``)."""
        return len(self._pending)

    def observe(self, event: PredictionEvent) -> JoinedPrediction | None:
        """Remember a prediction, or return the prediction that ``event`` (feedback) labels."""
        self._watermark = max(self._watermark, event.ts)
        if event.is_feedback:
            return self._join(event)
        self._remember(event)
        self._expire()
        return None

    def _join(self, feedback: PredictionEvent) -> JoinedPrediction | None:
        pending = self._pending.pop(feedback.event_id, None)
        if pending is None:
            self.counts.missed += 1
            return None
        if feedback.ts - pending.ts > self.horizon_ms:
            self.counts.expired += 1
            return None
        self.counts.joined += 1
        return JoinedPrediction(pending, str(feedback.label), feedback.ts)

    def _remember(self, event: PredictionEvent) -> None:
        self._pending[event.event_id] = PendingPrediction(
            event.ts, event.model_id, event.model_version, dict(event.segment), event.prediction,
            None if event.score is None else float(event.score),
        )
        self._pending.move_to_end(event.event_id)
        while len(self._pending) > self.max_entries:
            self._pending.popitem(last=False)
            self.counts.evicted += 1

    def _expire(self) -> None:
        # Predictions arrive nearly in event-time order, so the oldest sit at the front.
        horizon_start = self._watermark - self.horizon_ms
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if oldest.ts >= horizon_start:
                return
            self._pending.popitem(last=False)
            self.counts.expired += 1

    def clone(self) -> "FeedbackJoin":
        return FeedbackJoin(self.horizon_ms, self.max_entries)
