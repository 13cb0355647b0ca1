"""Segment degradation: one slice of a model's traffic got worse while the rest did not.

Labels are joined to predictions by a ``FeedbackJoin`` (the detector's own, or one a
``DetectorSet`` shares among detectors). For every
``(model_id, model_version)`` the error rate is kept per segment value (``region=EU``) and
per pair of segment attributes (``region=EU,device=android``) in a sliding window of
``window_ticks`` ticks of ``tick_ms`` event time, plus the segment's own history (labels
that left the window). At each tick every segment with at least ``min_labels`` labels in
the window and ``min_history`` labels of history is tested twice, one-sided: window vs its
own history and window vs the rest of the model's traffic in the same window (two-proportion
z tests). A segment is flagged only when *both* p-values are below ``alpha / m``, where ``m``
is the number of segments tested at that tick (Bonferroni), and the rate rose by at least
``min_effect`` over both. ``alpha`` is thus a per-model, per-tick false-alarm budget: with
the defaults (1e-4, 10-minute ticks) at most ~0.015 false alarms per model per day. A
model-wide rise fails the rest-of-traffic test (that is concept drift's job), a segment
that was always worse fails the history test. After a finding the segment relearns its
history, and so does every segment sharing an attribute value with it: one change, one
finding.

Labels are cheap to learn: each distinct segment mapping's keys are computed once, and the
labels of the current tick are tallied per group of segment keys (``_ModelState.unfiled``)
and filed into the window counts when the tick ends, before it is judged. A label of an
older tick, or of a segment not tracked yet (which may evict another), is counted at once
after filing. Filing replays the groups in the order they were last touched, which leaves
the counts and the least-recently-used order of segments exactly as adding each label at
once would.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from itertools import chain, combinations
from typing import ClassVar, Mapping, NamedTuple, Sequence

from detectors._regime import iso_utc, normal_sf, two_proportion_z
from detectors._lru import fits_without_eviction, lru_get, touch_in_order
from detectors.base import JoinsFeedback, Positioned, fresh_copy, register
from detectors.batch import NO_PREDICTIONS, Batch, last_touches
from detectors.events import Event, PredictionEvent
from detectors.feedback import DAY_MS, FeedbackJoin, Matched
from detectors.findings import Finding

ModelKey = tuple[str, str]
SegmentItems = tuple[tuple[str, str], ...]
#: The segments one labelled prediction counts in: its attribute values, then their pairs.
SegmentGroup = tuple[SegmentItems, ...]
#: A group and a number naming it (cheaper to hash than the group); never reused by a detector.
NumberedGroup = tuple[int, SegmentGroup]
#: Distinct segment mappings whose groups are remembered; beyond it the memo starts over.
MAX_MEMO_GROUPS = 4_096


@dataclass
class _Counts:
    """Labels and errors in a sliding window of ticks, plus everything older (history)."""

    window: deque[list[int]] = field(default_factory=deque)  # [tick, errors, labels, first prediction ts]
    window_errors: int = 0
    window_labels: int = 0
    history_errors: int = 0
    history_labels: int = 0
    quiet_until: int = -1

    def add(self, tick: int, errors: int, labels: int, first_prediction_ts: int) -> None:
        if not self.window or self.window[-1][0] != tick:
            self.window.append([tick, 0, 0, first_prediction_ts])
        bucket = self.window[-1]
        bucket[1] += errors
        bucket[2] += labels
        bucket[3] = min(bucket[3], first_prediction_ts)
        self.window_errors += errors
        self.window_labels += labels

    def roll(self, first_tick: int) -> None:
        while self.window and self.window[0][0] < first_tick:
            _, errors, labels, _ = self.window.popleft()
            self.window_errors -= errors
            self.window_labels -= labels
            self.history_errors += errors
            self.history_labels += labels

    def totals(self) -> tuple[int, int]:
        return self.window_errors, self.window_labels

    def start_ts(self) -> int:
        return min(bucket[3] for bucket in self.window)


@dataclass(slots=True)
class _Tally:
    """Labels of one group of segments not yet added to their counts."""

    group: SegmentGroup
    errors: int
    labels: int
    first_ts: int


@dataclass
class _ModelState:
    tick: int = -1
    predictions: int = 0
    overall: _Counts = field(default_factory=_Counts)
    segments: OrderedDict[SegmentItems, _Counts] = field(default_factory=OrderedDict)
    #: Labels of tick ``tick`` not yet in the counts, by group number, in the order groups were last touched.
    unfiled: OrderedDict[int, _Tally] = field(default_factory=OrderedDict)

    def tally(self, numbered: NumberedGroup, error: int, prediction_ts: int) -> bool:
        """Count a label of this tick for a group; False (nothing counted) if one of its segments is new."""
        number, group = numbered
        tally = self.unfiled.get(number)
        if tally is None:
            # (Never more tallies than segments: a tick's tallies stay as bounded as the segments.)
            if not all(map(self.segments.__contains__, group)) or len(self.unfiled) > len(self.segments):
                return False
            tally = self.unfiled[number] = _Tally(group, 0, 0, prediction_ts)
        else:
            self.unfiled.move_to_end(number)
        tally.errors += error
        tally.labels += 1
        if prediction_ts < tally.first_ts:
            tally.first_ts = prediction_ts
        return True

    def file(self) -> None:
        """Add the tallied labels to the counts, leaving exactly what adding each label at once would.

        Single adds leave the segments in the order of their last touch; the tallies are in
        the order of their groups' last touch, so a segment was last touched by the last tally
        holding it. A segment's labels are merged over its tallies: one add per segment.
        """
        if not self.unfiled:
            return
        tallies = self.unfiled.values()
        last_touched_first = dict.fromkeys(reversed(list(chain.from_iterable(tally.group for tally in tallies))))
        for items in reversed(last_touched_first):
            self.segments.move_to_end(items)
        by_segment: dict[SegmentItems, list[int]] = {}
        for tally in tallies:
            for items in tally.group:
                merged = by_segment.get(items)
                if merged is None:
                    by_segment[items] = [tally.errors, tally.labels, tally.first_ts]
                    continue
                merged[0] += tally.errors
                merged[1] += tally.labels
                if tally.first_ts < merged[2]:
                    merged[2] = tally.first_ts
        for items, (errors, labels, first_ts) in by_segment.items():
            self.segments[items].add(self.tick, errors, labels, first_ts)
        self.overall.add(self.tick, sum(tally.errors for tally in tallies), sum(tally.labels for tally in tallies),
                         min(tally.first_ts for tally in tallies))
        self.unfiled.clear()


class _Verdict(NamedTuple):  # a tuple: one is made per segment tested at every tick
    items: SegmentItems
    p_value: float
    errors: int
    labels: int
    rest_errors: int
    rest_labels: int
    history_errors: int
    history_labels: int
    start_ts: int

    @property
    def rate(self) -> float:
        return self.errors / self.labels

    @property
    def rest_rate(self) -> float:
        return self.rest_errors / max(self.rest_labels, 1)

    @property
    def history_rate(self) -> float:
        return self.history_errors / max(self.history_labels, 1)


@register("segment_degradation")
class SegmentDegradationDetector(JoinsFeedback):
    """Finds a segment (or pair of segment attributes) whose error rate rose while the rest held.

    Example: from prediction 12000 the error rate of ``region=EU,device=android`` (a ninth of
    traffic) goes from 20% to 50%; the overall error rate moves only from 20% to 23%.

    >>> from detectors._testing import labeled_stream
    >>> events = labeled_stream(seed=2, n=20_000, change_at=12_000, error_after=0.5,
    ...                         degraded_segment={"region": "EU", "device": "android"})
    >>> detector = SegmentDegradationDetector()
    >>> [(i, f.evidence["segment"]) for i, e in enumerate(events) if (f := detector.update(e))]
    [(18529, 'device=android,region=EU')]
    """

    name: ClassVar[str] = "segment_degradation"
    event_types: ClassVar[tuple[type, ...]] = (PredictionEvent,)
    kind: ClassVar[str] = "segment_degradation"

    def __init__(
        self,
        alpha: float = 1e-4,
        min_labels: int = 100,
        min_history: int = 200,
        min_effect: float = 0.1,
        tick_ms: int = 600_000,
        window_ticks: int = 6,
        max_attributes: int = 4,
        max_segments: int = 1_000,
        horizon_ms: int = 7 * DAY_MS,
        max_pending: int = 200_000,
        max_keys: int = 10_000,
    ) -> None:
        self.alpha = alpha
        self.min_labels = min_labels
        self.min_history = min_history
        self.min_effect = min_effect
        self.tick_ms = tick_ms
        self.window_ticks = window_ticks
        self.max_attributes = max_attributes
        self.max_segments = max_segments
        self.horizon_ms = horizon_ms
        self.max_pending = max_pending
        self.max_keys = max_keys
        self._reset()

    def _reset(self) -> None:
        self._join = FeedbackJoin(self.horizon_ms, self.max_pending)
        self._states: OrderedDict[ModelKey, _ModelState] = OrderedDict()
        self._groups: dict[tuple[tuple[str, str], ...], NumberedGroup] = {}
        self._groups_numbered = 0

    @property
    def n_tracked_keys(self) -> int:
        """Model versions holding learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "SegmentDegradationDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        found = self.update_many((event,))
        return found[0][1] if found else None

    def update_matched(self, batch: Batch, matches: Sequence[Matched]) -> list[Positioned]:
        """``update_many`` with the batch's labels matched already (by ``feedback_join.feed``).

        Unless the batch could evict a version, predictions are counted per version from the
        batch's grouping (a label sees its version's count as of its position) and only the
        labels are walked; else event by event.
        """
        by_version = batch.predictions_by_version()
        touched = last_touches(by_version, matches)
        if not fits_without_eviction(self._states, touched, self.max_keys):
            return self._update_in_order(batch.events, matches)
        found: list[Positioned] = []
        states, before = self._states, dict[ModelKey, int]()
        for label in matches:
            key = (label.prediction.model_id, label.prediction.model_version)
            positions = by_version.get(key, NO_PREDICTIONS)[0]
            state = states.get(key)  # no eviction within the batch, and touch_in_order sets the order after it
            if state is None:
                state = states[key] = _ModelState()
            if positions:
                state.predictions = before.setdefault(key, state.predictions) + bisect_left(positions, label.position)
            finding = self._learn(label, key, state)
            if finding is not None:
                found.append((label.position, finding))
        for key, (positions, _) in by_version.items():
            state = states.get(key)
            if state is None:
                state = states[key] = _ModelState()
            state.predictions = before.get(key, state.predictions) + len(positions)
        touch_in_order(states, touched)
        return found

    def _update_in_order(self, events: Sequence[Event], matches: Sequence[Matched]) -> list[Positioned]:
        """``update_matched`` event by event: a version may be evicted within the batch."""
        found: list[Positioned] = []
        states = self._states
        labels = iter(matches)
        label = next(labels, None)
        label_at = -1 if label is None else label.position
        for position, event in enumerate(events):
            if position == label_at:
                finding = self._learn(label)  # type: ignore[arg-type]  # label_at >= 0: a label
                if finding is not None:
                    found.append((position, finding))
                label = next(labels, None)
                label_at = -1 if label is None else label.position
            elif isinstance(event, PredictionEvent) and (event.label is None or event.features):  # a prediction
                key = (event.model_id, event.model_version)
                state = states.get(key)
                if state is None:  # lru_get, inlined on the hot path for the common case: a known version
                    state = lru_get(states, key, self.max_keys, _ModelState)
                else:
                    states.move_to_end(key)
                state.predictions += 1
        return found

    def _learn(self, matched: Matched, key: ModelKey | None = None, state: _ModelState | None = None) -> Finding | None:
        """Learn a label; its version's ``key`` and ``state`` when the caller has them (no LRU step then)."""
        prediction, now = matched.prediction, matched.feedback_ts
        if key is None or state is None:
            key = (prediction.model_id, prediction.model_version)
            state = lru_get(self._states, key, self.max_keys, _ModelState)
        tick = now // self.tick_ms
        finding = None
        if tick > state.tick:
            state.file()
            if state.tick >= 0:
                finding = self._evaluate(key, state, tick, now, matched.joined)
            state.tick = tick
        error, numbered = int(matched.error), self._group_of(prediction.segment)
        if tick != state.tick or not state.tally(numbered, error, prediction.ts):
            state.file()  # a label of an older tick, or a new segment: counted at once, in order
            state.overall.add(tick, error, 1, prediction.ts)
            for items in numbered[1]:
                self._segment(state, items).add(tick, error, 1, prediction.ts)
        return finding

    def _group_of(self, segment: Mapping[str, str]) -> NumberedGroup:
        """The segments a prediction with ``segment`` counts in, computed once per distinct mapping."""
        signature = tuple(segment.items())
        numbered = self._groups.get(signature)
        if numbered is None:
            if len(self._groups) >= MAX_MEMO_GROUPS:
                self._groups.clear()
            items = sorted(signature)[: self.max_attributes]
            self._groups_numbered += 1
            numbered = self._groups[signature] = (
                self._groups_numbered, tuple((item,) for item in items) + tuple(combinations(items, 2)),
            )
        return numbered

    def _segment(self, state: _ModelState, items: SegmentItems) -> _Counts:
        counts = state.segments.get(items)
        if counts is None:
            counts = state.segments[items] = _Counts()
            while len(state.segments) > self.max_segments:
                state.segments.popitem(last=False)
        else:
            state.segments.move_to_end(items)
        return counts

    def _evaluate(self, key: ModelKey, state: _ModelState, tick: int, now: int, joined: int) -> Finding | None:
        """The worst segment flagged at ``tick``, if any (``joined``: labels the join has matched so far)."""
        first_tick = tick - self.window_ticks
        state.overall.roll(first_tick)
        total_errors, total_labels = state.overall.totals()
        verdicts = []
        for items, counts in state.segments.items():
            counts.roll(first_tick)
            verdict = self._test(items, counts, total_errors, total_labels, tick)
            if verdict is not None:
                verdicts.append(verdict)
        budget = self.alpha / max(len(verdicts), 1)
        flagged = [v for v in verdicts if v.p_value < budget and self._rose_enough(v)]
        if not flagged:
            return None
        worst = min(flagged, key=lambda verdict: verdict.p_value)
        self._settle(state, worst.items, tick)
        return self._finding(key, state, worst, len(verdicts), now, joined)

    def _test(self, items: SegmentItems, counts: _Counts, total_errors: int, total_labels: int,
              tick: int) -> _Verdict | None:
        errors, labels = counts.totals()
        if labels < self.min_labels or counts.history_labels < self.min_history or tick <= counts.quiet_until:
            return None
        rest_errors, rest_labels = total_errors - errors, total_labels - labels
        z_rest = two_proportion_z(errors, labels, rest_errors, rest_labels)
        z_history = two_proportion_z(errors, labels, counts.history_errors, counts.history_labels)
        p_value = max(normal_sf(z_rest), normal_sf(z_history))
        return _Verdict(items, p_value, errors, labels, rest_errors, rest_labels, counts.history_errors,
                        counts.history_labels, counts.start_ts())

    def _rose_enough(self, verdict: _Verdict) -> bool:
        return verdict.rest_labels >= self.min_labels and (
            verdict.rate - max(verdict.rest_rate, verdict.history_rate) >= self.min_effect
        )

    def _settle(self, state: _ModelState, items: SegmentItems, tick: int) -> None:
        # The degraded regime becomes the history of the segment and of every segment sharing an
        # attribute value with it (``region=EU`` is worse *because* ``region=EU,device=android`` is):
        # one change, one finding. They are judged again once they have relearned ``min_history``.
        flagged = set(items)
        for other in [other for other in state.segments if flagged & set(other)]:
            state.segments[other] = _Counts(quiet_until=tick)

    def _finding(self, key: ModelKey, state: _ModelState, verdict: _Verdict, tested: int, now: int,
                 joined: int) -> Finding:
        label_share = joined / max(state.predictions, 1)
        hit = int(round(verdict.labels / max(label_share, 1e-9))) if label_share > 0 else verdict.labels
        effect = verdict.rate - max(verdict.rest_rate, verdict.history_rate)
        name = ",".join(f"{attribute}={value}" for attribute, value in verdict.items)
        start = min(verdict.start_ts, now)
        evidence = {
            "segment": name,
            "recent_error_rate": f"{verdict.rate:.4f}",
            "rest_error_rate": f"{verdict.rest_rate:.4f}",
            "history_error_rate": f"{verdict.history_rate:.4f}",
            "n_labels_segment": str(verdict.labels),
            "n_labels_rest": str(verdict.rest_labels),
            "n_labels_history": str(verdict.history_labels),
            "effect_size": f"{effect:+.4f}",
            "p_value": f"{verdict.p_value:.3g}",
            "segments_tested": str(tested),
            "bonferroni_threshold": f"{self.alpha / max(tested, 1):.3g}",
            "affected_predictions": str(hit),
            "change_began": iso_utc(start),
        }
        return Finding(
            kind=self.kind, detector=self.name, ts=now, window_start=start, window_end=now,
            score=-math.log10(max(verdict.p_value, 1e-300)), threshold=-math.log10(self.alpha / max(tested, 1)),
            strength=min(1.0, max(effect, 0.0) / (4 * max(self.min_effect, 0.05))),
            summary=_summary(key, name, verdict, hit, start, tested),
            model_id=key[0], model_version=key[1], segment=dict(verdict.items), evidence=evidence,
            recommended_actions=(
                f"Route decisions of {key[0]}:{key[1]} for {name} to human review or a fallback policy",
                f"Look for a data or product change that only affects {name} (new app release, local regulation)",
                "Collect recent labeled examples of this segment and retrain or add a segment-specific fix",
            ),
        )


def _summary(key: ModelKey, name: str, verdict: _Verdict, hit: int, start: int, tested: int) -> str:
    return (
        f"Model {key[0]} version {key[1]} degraded on segment {name}: its error rate is {verdict.rate:.1%} over "
        f"the last {verdict.labels} labeled predictions (since about {iso_utc(start)}), against "
        f"{verdict.rest_rate:.1%} for the rest of the traffic ({verdict.rest_labels} labels) and {verdict.history_rate:.1%} "
        f"in the segment's own history ({verdict.history_labels} labels); p={verdict.p_value:.2g}, significant "
        f"after correcting for {tested} segments tested. About {hit} predictions for this segment made since "
        f"then may be wrong; review them and check what changed for this segment only."
    )
