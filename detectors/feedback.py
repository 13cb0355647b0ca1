"""A bounded, event-time join of delayed feedback (labels) to the predictions they judge.

Feedback is a ``PredictionEvent`` with a ``label`` and no features, carrying the
``event_id`` of an earlier prediction. ``FeedbackJoin`` remembers recent predictions by
``event_id`` for at most ``horizon_ms`` of event time and at most ``max_entries`` of them
(oldest forgotten first), so memory stays bounded however many predictions never get a
label. Each detector that needs labels has a join (``detectors.base.JoinsFeedback``).

Most predictions never get a label, so remembering one is the hot path: the join keeps the
(immutable) prediction event itself rather than a copy, and does no other allocation.

Detectors read a micro-batch's matches from ``FeedbackJoin.feed``. Detectors whose joins
have the same horizon and size give the same matches, so a ``DetectorSet`` lets them share
one join and feeds it once per batch. ``feed`` is compiled (``detectors/_join.c``): about 0.4 us
per event on the benchmark workload, against 0.6-0.7 us for ``_py_feed``, its reference; most of
what is left is the dictionary's own work on a table of some 100k predictions.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

from detectors._compiled import COMPILED_FROM, SAFE_INT, join_kernel
from detectors.events import PredictionEvent

POSITIVE_LABELS = frozenset({"positive", "1", "true", "yes"})
DAY_MS = 86_400_000
#: Times (ms) the compiled join handles (``detectors._compiled.SAFE_INT``).
SAFE_TS = SAFE_INT


def is_error(prediction: PredictionEvent, label: str) -> bool:
    """``prediction`` disagrees with ``label`` (a score >= 0.5 means positive when there is no class).

    >>> is_error(PredictionEvent("e1", 0, "m", "v1", prediction="positive"), " Positive")
    False
    >>> is_error(PredictionEvent("e1", 0, "m", "v1", score=0.3), "true")
    True
    """
    if prediction.prediction is not None:
        return prediction.prediction.strip().lower() != label.strip().lower()
    score = float(prediction.score) if prediction.score is not None else 0.0
    return (score >= 0.5) != (label.strip().lower() in POSITIVE_LABELS)


@dataclass(frozen=True, slots=True)
class JoinedPrediction:
    """A prediction and its ground truth, matched by ``event_id``."""

    prediction: PredictionEvent
    label: str
    feedback_ts: int

    @property
    def is_error(self) -> bool:
        return is_error(self.prediction, self.label)


class Matched(NamedTuple):
    """A label of a micro-batch matched to its prediction, with the join's counts right after it."""

    position: int  # of the feedback event in the batch
    prediction: PredictionEvent
    label: str
    feedback_ts: int
    joined: int
    missed: int
    lost: int  # predictions expired or evicted unlabeled
    error: bool  # the prediction disagrees with the label (``is_error``, worked out once for every detector)


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

    ``observe`` takes any prediction event; detectors call ``remember`` and ``match``
    directly, having already told predictions from feedback.

    >>> from detectors._testing import labeled_stream
    >>> join = FeedbackJoin(horizon_ms=3_600_000, max_entries=1_000)
    >>> joined = [j for e in labeled_stream(seed=1, n=2_000) if (j := join.observe(e))]
    >>> len(joined), join.counts.missed, join.n_pending <= 1_000
    (574, 0, True)
    """

    horizon_ms: int = 7 * DAY_MS
    max_entries: int = 200_000
    counts: JoinCounts = field(default_factory=JoinCounts)
    _pending: OrderedDict[str, PredictionEvent] = field(default_factory=OrderedDict)
    _watermark: int = 0
    # The oldest remembered prediction and the watermark up to which it stays within the
    # horizon (-1, below any watermark: not known), so that checking the horizon costs one
    # comparison rather than a look at the front of ``_pending`` per prediction.
    _front_id: str | None = None
    _keep_until: int = -1
    # Whether the join has met a time that is not an int within +-2**62 ms (``SAFE_TS``): the compiled
    # ``feed``, whose arithmetic is 64-bit, then leaves it to Python for good. Event times from the
    # topics are ints, and no plausible year gets near the bound.
    _wide: bool = False

    @property
    def n_pending(self) -> int:
        """Predictions currently waiting for a label (never above ``max_entries``)."""
        return len(self._pending)

    def observe(self, event: PredictionEvent) -> JoinedPrediction | None:
        """Remember a prediction, or return the prediction that ``event`` (feedback) labels."""
        if not event.is_feedback:
            self.remember(event)
            return None
        prediction = self.match(event)
        return None if prediction is None else JoinedPrediction(prediction, str(event.label), event.ts)

    def feed(self, events: Sequence[object]) -> list[Matched]:
        """Remember the predictions and match the labels among ``events``, in order: the matches.

        What ``observe`` on each ``PredictionEvent`` would do; other events are passed over.
        Compiled (``detectors/_join.c``) for a batch of ``COMPILED_FROM`` events or more, unless the join
        has met a time that is not an int within +-2**62 ms, which the compiled loop leaves to
        ``_py_feed``, the reference it is tested against.
        """
        matches: list[Matched] = []
        done = 0
        if join_kernel is not None and not self._wide and len(events) >= COMPILED_FROM:
            done = join_kernel.feed(self, events, 0, matches, PredictionEvent, Matched, POSITIVE_LABELS)
            if done == len(events):
                return matches
            self._wide = True
        return self._py_feed(events, done, matches)

    def _py_feed(self, events: Sequence[object], start: int = 0, matches: list[Matched] | None = None) -> list[Matched]:
        """``feed`` in Python, from ``events[start]`` on, appending to ``matches``."""
        matches = [] if matches is None else matches
        remember, match, counts = self.remember, self.match, self.counts
        pending, max_entries = self._pending, self.max_entries
        for position, event in enumerate(events[start:] if start else events, start):
            if type(event) is not PredictionEvent and not isinstance(event, PredictionEvent):
                continue
            if event.label is None or event.features:  # a prediction (``is_feedback``, inlined: the hot path)
                # ``remember``'s common case inlined: a new id, room left, the oldest not yet due to expire.
                if event.ts > self._watermark:
                    self._watermark = event.ts
                event_id = event.event_id
                if (self._watermark <= self._keep_until and len(pending) < max_entries and event_id not in pending
                        and event_id != self._front_id):
                    pending[event_id] = event
                else:
                    remember(event)
            elif (prediction := match(event)) is not None:
                matches.append(Matched(position, prediction, event.label, event.ts, counts.joined, counts.missed,
                                       counts.expired + counts.evicted, is_error(prediction, event.label)))
        return matches

    @property
    def shape(self) -> tuple[int, int]:
        """(horizon, size): joins of the same shape fed the same events give the same matches."""
        return self.horizon_ms, self.max_entries

    def remember(self, prediction: PredictionEvent) -> None:
        """Keep ``prediction`` until its label arrives; forget what is too old or too many."""
        pending, event_id = self._pending, prediction.event_id
        if type(prediction.ts) is not int or not -SAFE_TS < prediction.ts < SAFE_TS:
            self._wide = True  # a time the compiled feed would not take: the join stays in Python
        if prediction.ts > self._watermark:
            self._watermark = prediction.ts
        if event_id == self._front_id:  # the oldest is remembered anew, at the back
            self._keep_until = -1
        size = len(pending)
        pending[event_id] = prediction
        if len(pending) == size:
            pending.move_to_end(event_id)  # an event_id seen again counts as the newest
        elif size >= self.max_entries:
            self._evict()
        if self._watermark > self._keep_until:
            self._expire()

    def match(self, feedback: PredictionEvent) -> PredictionEvent | None:
        """The remembered prediction ``feedback`` labels (then forgotten), if still within the horizon."""
        if feedback.ts > self._watermark:
            self._watermark = feedback.ts
        if feedback.event_id == self._front_id:
            self._keep_until = -1
        prediction = self._pending.pop(feedback.event_id, None)
        if prediction is None:
            self.counts.missed += 1
            return None
        if feedback.ts - prediction.ts > self.horizon_ms:
            self.counts.expired += 1
            return None
        self.counts.joined += 1
        return prediction

    def _evict(self) -> None:
        while len(self._pending) > self.max_entries:
            self._pending.popitem(last=False)
            self.counts.evicted += 1
        self._keep_until = -1

    def _expire(self) -> None:
        # Predictions arrive nearly in event-time order, so the oldest sit at the front.
        pending, horizon_start = self._pending, self._watermark - self.horizon_ms
        while pending:
            event_id, oldest = next(iter(pending.items()))
            if oldest.ts >= horizon_start:
                self._front_id, self._keep_until = event_id, oldest.ts + self.horizon_ms
                return
            pending.popitem(last=False)
            self.counts.expired += 1
        self._front_id, self._keep_until = None, -1

    def clone(self) -> "FeedbackJoin":
        return FeedbackJoin(self.horizon_ms, self.max_entries)
