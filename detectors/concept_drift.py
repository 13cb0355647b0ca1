"""Concept drift: a model version's error rate on labeled predictions rose and stayed up.

A ``FeedbackJoin`` (the detector's own, or one a ``DetectorSet`` shares among detectors) matches
delayed labels to earlier predictions by ``event_id``. The joined error stream (0 right, 1 wrong) of
each ``(model_id, model_version)`` feeds River's ADWIN; a cut becomes a finding only after
``min_labels`` labels and when the error rate rose by at least ``min_effect`` (absolute) over at
least ``min_recent`` labels (checked for ``recheck`` labels after each cut, since ADWIN may cut
before the new regime is that long). Beside ADWIN, an upward CUSUM on the same error stream
(``RankCusum`` on 0/1 errors is a standardised Bernoulli CUSUM against the version's own stable
error rate, with a higher threshold since 0/1 steps are skewed) accumulates evidence label by label,
so a clear rise is caught after a few hundred labels rather than when ADWIN's window splits; its
crossing must also show a rise of ``min_effect`` (beyond two standard errors) over at least
``min_run`` labels. After a finding the key relearns from the new regime: one change, one finding.

A micro-batch is learned version by version: predictions are counted per version (from the batch's
grouping, or as they come when a version could be evicted meanwhile), while labels wait, with what a
finding at them would report, and are learned at the end of the batch (each version's state is its
own, so the order across versions changes nothing). A version's CUSUM then runs ahead over its
labels at once (``RankCusum.update_many``) up to its next alarm. Before any version's state is
evicted, the waiting labels are learned.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field
from operator import itemgetter
from typing import ClassVar, Sequence

import numpy as np
from river import drift

from detectors._regime import CusumAlarm, Moments, RankCusum, RecentBlocks, Regime, adwin, affected, iso_utc
from detectors._lru import fits_without_eviction, lru_get, touch_in_order
from detectors.base import JoinsFeedback, Positioned, fresh_copy, register
from detectors.batch import NO_PREDICTIONS, Batch, last_touches
from detectors.events import Event, PredictionEvent
from detectors.feedback import DAY_MS, FeedbackJoin, Matched
from detectors.findings import Finding

ModelKey = tuple[str, str]
#: A joined label waiting for the end of its micro-batch: (position, prediction ts, error, feedback ts),
#: then what a finding at it reports: (the version's predictions so far, labels joined, join misses,
#: predictions expired or evicted).
_Label = tuple[int, int, float, int, int, int, int, int]
#: Fewer labels than this go through the CUSUM one by one (numpy's fixed cost per call outweighs it).
MIN_CUSUM_BATCH = 16


@dataclass
class _VersionState:
    """One model version: its prediction volume and its error stream since the last finding."""

    adwin: drift.ADWIN
    first_ts: int
    predictions: int = 0
    errors: Moments = field(default_factory=Moments)
    blocks: RecentBlocks = field(default_factory=lambda: RecentBlocks(16, 64))
    pending: int = 0  # labels left in which to confirm ADWIN's last cut
    cusum: RankCusum = field(default_factory=lambda: RankCusum(threshold=45.0))


@register("concept_drift")
class ConceptDriftDetector(JoinsFeedback):
    """Finds a lasting rise in a model version's error rate once delayed labels arrive.

    Example: the error rate of ``churn:v1`` goes from 20% to 45% at prediction 4000;
    labels arrive about 10 minutes later for 30% of predictions.

    >>> from detectors._testing import labeled_stream
    >>> events = labeled_stream(seed=3, n=8_000, change_at=4_000, error_after=0.45)
    >>> detector = ConceptDriftDetector()
    >>> [(i, f.kind, f.evidence["recent_error_rate"]) for i, e in enumerate(events) if (f := detector.update(e))]
    [(6330, 'concept_drift', '0.3915')]
    """

    name: ClassVar[str] = "concept_drift"
    event_types: ClassVar[tuple[type, ...]] = (PredictionEvent,)
    kind: ClassVar[str] = "concept_drift"

    def __init__(
        self,
        delta: float = 1e-4,
        min_labels: int = 300,
        min_recent: int = 100,
        min_effect: float = 0.08,
        horizon_ms: int = 7 * DAY_MS,
        max_pending: int = 200_000,
        max_keys: int = 10_000,
        recheck: int = 512,
        min_run: int = 30,
    ) -> None:
        self.delta = delta
        self.min_labels = min_labels
        self.min_recent = min_recent
        self.min_effect = min_effect
        self.horizon_ms = horizon_ms
        self.max_pending = max_pending
        self.max_keys = max_keys
        self.recheck = recheck
        self.min_run = min_run
        self._reset()

    def _reset(self) -> None:
        self._join = FeedbackJoin(self.horizon_ms, self.max_pending)
        self._states: OrderedDict[ModelKey, _VersionState] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """Model versions holding learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "ConceptDriftDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        found = self.update_many((event,))
        return found[0][1] if found else None

    def update_matched(self, batch: Batch, matches: Sequence[Matched]) -> list[Positioned]:
        """``update_many`` with the batch's labels matched already (by ``feedback_join.feed``).

        Unless the batch could evict a version, predictions are counted per version from the
        batch's grouping and only the labels are walked; else event by event.
        """
        by_version = batch.predictions_by_version()
        touched = last_touches(by_version, matches)
        if not fits_without_eviction(self._states, touched, self.max_keys):
            return self._update_in_order(batch.events, matches)
        found: list[Positioned] = []
        waiting: dict[ModelKey, list[_Label]] = {}
        states, before = self._states, dict[ModelKey, int]()
        for label in matches:
            prediction = label.prediction
            key = (prediction.model_id, prediction.model_version)
            positions, events = by_version.get(key, NO_PREDICTIONS)
            state = states.get(key)
            if state is None:  # first seen in this batch: at its first prediction, or at this label
                first_ts = events[0].ts if positions and positions[0] < label.position else prediction.ts
                state = states[key] = _VersionState(adwin(self.delta), first_ts)
            counted = before.setdefault(key, state.predictions) + bisect_left(positions, label.position)
            self._queue(label, counted, waiting)
        for key, (positions, events) in by_version.items():
            state = states.get(key)
            if state is None:
                state = states[key] = _VersionState(adwin(self.delta), events[0].ts)
            state.predictions = before.get(key, state.predictions) + len(positions)
        touch_in_order(states, touched)
        self._learn_waiting(waiting, found)
        found.sort(key=itemgetter(0))
        return found

    def _update_in_order(self, events: Sequence[Event], matches: Sequence[Matched]) -> list[Positioned]:
        """``update_matched`` event by event: a version may be evicted within the batch."""
        found: list[Positioned] = []
        waiting: dict[ModelKey, list[_Label]] = {}
        states = self._states
        labels = iter(matches)
        label = next(labels, None)
        label_at = -1 if label is None else label.position
        for position, event in enumerate(events):
            if position == label_at:
                self._wait(label, waiting, found)  # type: ignore[arg-type]  # label_at >= 0: a label
                label = next(labels, None)
                label_at = -1 if label is None else label.position
            elif isinstance(event, PredictionEvent) and (event.label is None or event.features):  # a prediction
                key = (event.model_id, event.model_version)
                state = states.get(key)
                if state is None:
                    state = self._new_state(key, event.ts, waiting, found)
                else:
                    states.move_to_end(key)
                state.predictions += 1
        self._learn_waiting(waiting, found)
        found.sort(key=itemgetter(0))
        return found

    def _wait(self, matched: Matched, waiting: dict[ModelKey, list[_Label]], found: list[Positioned]) -> None:
        """Queue a joined label, with what a finding at it would report; its version is used now, as then."""
        prediction = matched.prediction
        key = (prediction.model_id, prediction.model_version)
        state = self._states.get(key)
        if state is None:
            state = self._new_state(key, prediction.ts, waiting, found)
        else:
            self._states.move_to_end(key)
        self._queue(matched, state.predictions, waiting)

    @staticmethod
    def _queue(matched: Matched, predictions: int, waiting: dict[ModelKey, list[_Label]]) -> None:
        """Queue a joined label for its version's run, with ``predictions`` of the version counted so far."""
        prediction = matched.prediction
        error = 1.0 if matched.error else 0.0
        labels = waiting.get((prediction.model_id, prediction.model_version))
        if labels is None:
            labels = waiting[(prediction.model_id, prediction.model_version)] = []
        labels.append((matched.position, prediction.ts, error, matched.feedback_ts, predictions, matched.joined,
                       matched.missed, matched.lost))

    def _new_state(self, key: ModelKey, ts: int, waiting: dict[ModelKey, list[_Label]],
                   found: list[Positioned]) -> _VersionState:
        """A state for ``key``, first seen at ``ts``; the waiting labels are learned first if one gets evicted."""
        if len(self._states) >= self.max_keys:
            self._learn_waiting(waiting, found)
        return lru_get(self._states, key, self.max_keys, lambda: _VersionState(adwin(self.delta), ts))

    def _learn_waiting(self, waiting: dict[ModelKey, list[_Label]], found: list[Positioned]) -> None:
        for key, labels in waiting.items():
            self._learn_run(key, labels, found)
        waiting.clear()

    def _learn_run(self, key: ModelKey, labels: list[_Label], found: list[Positioned]) -> None:
        """Learn one version's waiting labels in order, its CUSUM stepped ahead to its next alarm."""
        state = self._states[key]
        stamps, errors = [label[1] for label in labels], [label[2] for label in labels]
        alarm_index, alarm = -1, None
        for index, label in enumerate(labels):
            if alarm_index < index:
                alarm_index, alarm = _next_alarm(state.cusum, stamps, errors, index)
            finding = self._learn(key, state, label, alarm if index == alarm_index else None)
            if finding is not None:
                found.append((label[0], finding))
                state, alarm_index = self._states[key], -1  # a fresh state: its CUSUM starts at the next label
            elif index == alarm_index:
                alarm_index = -1  # the quieted CUSUM goes on from the next label

    def _learn(self, key: ModelKey, state: _VersionState, label: _Label, alarm: CusumAlarm | None) -> Finding | None:
        """Learn one label (the CUSUM has already taken it: ``alarm`` if it crossed there)."""
        _, prediction_ts, error = label[:3]
        state.adwin.update(error)  # type: ignore[no-untyped-call]  # river is untyped here
        state.errors.update(error)
        state.blocks.add(prediction_ts, error)
        if alarm is not None:
            finding = self._on_cusum(key, state, alarm, label)
            if finding is not None:
                return finding
        if state.adwin.drift_detected and state.errors.n >= self.min_labels:
            # ADWIN may cut before the new regime holds ``min_recent`` labels; keep checking a while.
            state.pending = self.recheck
        if state.pending <= 0:
            return None
        state.pending -= 1
        recent = state.blocks.recent_regime()
        baseline = state.errors.minus(recent.moments)
        rise = recent.moments.mean - baseline.mean
        if recent.moments.n < self.min_recent or baseline.n < self.min_recent or rise < self.min_effect:
            return None
        return self._report(key, state, baseline, recent, label)

    def _on_cusum(self, key: ModelKey, state: _VersionState, alarm: CusumAlarm, label: _Label) -> Finding | None:
        baseline = _reference_moments(state.cusum.reference)
        rate = alarm.recent.mean
        # The crossing run was selected for being high: its rise must clear the floor by two standard errors.
        rise = rate - baseline.mean - 2 * math.sqrt(rate * (1 - rate) / max(alarm.n, 1))
        if alarm.direction < 0 or alarm.n < self.min_run or rise < self.min_effect:
            state.cusum.quiet()
            return None
        return self._report(key, state, baseline, Regime(alarm.start_ts, alarm.recent, []), label)

    def _report(self, key: ModelKey, state: _VersionState, baseline: Moments, recent: Regime,
                label: _Label) -> Finding:
        """The finding at ``label``; ``key`` relearns from the new regime.

        The fresh state takes the prediction count as it stands: predictions later in the batch,
        counted on the old state meanwhile, are the ones it would have counted itself.
        """
        finding = self._finding(key, state.first_ts, baseline, recent, label)
        self._states[key] = _VersionState(adwin(self.delta), state.first_ts, state.predictions)
        return finding

    def _finding(self, key: ModelKey, first_ts: int, baseline: Moments, recent: Regime, label: _Label) -> Finding:
        now, predictions, joined, missed, lost = label[3:]
        rise = recent.moments.mean - baseline.mean
        hit = affected(predictions, recent.start_ts, first_ts, now)
        evidence = {
            "baseline_error_rate": f"{baseline.mean:.4f}",
            "recent_error_rate": f"{recent.moments.mean:.4f}",
            "error_rate_rise": f"{rise:+.4f}",
            "n_labels_before": str(int(baseline.n)),
            "n_labels_after": str(int(recent.moments.n)),
            "labels_joined": str(joined),
            "join_misses": str(missed),
            "join_expired": str(lost),
            "affected_predictions": str(hit),
            "adwin_delta": f"{self.delta:g}",
            "change_began": iso_utc(recent.start_ts),
        }
        return Finding(
            kind=self.kind, detector=self.name, ts=now, window_start=min(recent.start_ts, now), window_end=now,
            score=rise, threshold=self.min_effect, strength=min(1.0, rise / (4 * self.min_effect)),
            summary=_summary(key, baseline, recent, hit, self.delta),
            model_id=key[0], model_version=key[1], evidence=evidence,
            recommended_actions=(
                f"Route decisions of {key[0]}:{key[1]} made since {iso_utc(recent.start_ts)} to human review",
                "Check whether the relationship between inputs and outcomes changed (new fraud pattern, policy change)",
                "Retrain on recent labeled data or roll back to a version that still performs",
            ),
        )


def _next_alarm(cusum: RankCusum, stamps: list[int], errors: list[float], start: int) -> tuple[int, CusumAlarm | None]:
    """Step ``cusum`` over ``errors`` from ``start`` until it crosses: where, and the alarm (else the end, None)."""
    if len(errors) - start < MIN_CUSUM_BATCH:
        for index in range(start, len(errors)):
            if (alarm := cusum.update(stamps[index], errors[index])) is not None:
                return index, alarm
        return len(errors), None
    crossed = cusum.update_many(stamps, np.array(errors, dtype=np.float64), start)
    return crossed if crossed is not None else (len(errors), None)


def _reference_moments(reference: list[float]) -> Moments:
    moments = Moments()
    for value in reference:
        moments.update(value)
    return moments


def _summary(key: ModelKey, baseline: Moments, recent: Regime, hit: int, delta: float) -> str:
    return (
        f"The error rate of model {key[0]} version {key[1]} rose from {baseline.mean:.1%} "
        f"({int(baseline.n)} labeled predictions) to {recent.moments.mean:.1%} over the last "
        f"{int(recent.moments.n)} labeled predictions, made since about {iso_utc(recent.start_ts)}; "
        f"confirmed by a sequential test (ADWIN at confidence 1-{delta:g} or an error-rate CUSUM). About {hit} predictions made since then may be wrong "
        f"and the decisions based on them should be reviewed; retrain or roll back if the rise persists."
    )
