"""Prediction drift: the score stream of one model version moved away from its own past.

Each ``(model_id, model_version)`` score stream feeds a two-sided CUSUM on the scores'
mid-ranks in a reference sample of that stream's own past (``RankCusum``): the reference is
fixed only once the stream is stable (an online model still converging is not a baseline),
ranks make the statistic indifferent to the scores' skew and scale, and CUSUM accumulates
evidence, so a large step is caught within tens of predictions and a small one or a slow ramp
as soon as the evidence adds up. The threshold is set by the in-control run length (about 4e7
predictions per side between false alarms with the defaults), not per check. A crossing only becomes a
finding when the run that crossed is large in absolute terms and in baseline standard
deviations (Cohen's d), so tiny shifts stay quiet. After a finding the key's reference
restarts from the new regime: one change, one finding.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import ClassVar, Sequence

import numpy as np

from detectors._lru import fits_without_eviction, lru_get, touch_in_order
from detectors._regime import CusumAlarm, FloatArray, Moments, RankCusum, iso_utc
from detectors.base import Positioned, fresh_copy, register
from detectors.batch import Batch
from detectors.events import Event, PredictionEvent
from detectors.findings import Finding

_ts, _score = attrgetter("ts"), attrgetter("score")

ModelKey = tuple[str, str]
_Stream = tuple[list[int], list[PredictionEvent], FloatArray]  # positions in the batch, predictions, their scores


@dataclass
class _ModelState:
    """What is learned about one model version's scores since its last finding."""

    cusum: RankCusum


@register("score_drift")
class ScoreDriftDetector:
    """Finds a lasting shift in a model version's prediction scores.

    Example: scores drawn from Beta(3, 7) (mean 0.3) jump to Beta(6, 4) (mean 0.6) at
    event 1000; the shift is caught 22 events later and dated to event 1000.

    >>> from detectors._testing import score_stream
    >>> events = score_stream(seed=7, n=3000, change_at=1000)
    >>> detector = ScoreDriftDetector()
    >>> found = [(i, f.kind) for i, e in enumerate(events) if (f := detector.update(e))]
    >>> found
    [(1022, 'prediction_drift')]
    """

    name: ClassVar[str] = "score_drift"
    event_types: ClassVar[tuple[type, ...]] = (PredictionEvent,)
    kind: ClassVar[str] = "prediction_drift"

    def __init__(
        self,
        slack: float = 0.25,
        threshold: float = 30.0,
        warmup: int = 500,
        max_reference: int = 1000,
        min_effect: float = 0.2,
        min_shift: float = 0.02,
        max_keys: int = 10_000,
    ) -> None:
        self.slack = slack
        self.threshold = threshold
        self.warmup = warmup
        self.max_reference = max_reference
        self.min_effect = min_effect
        self.min_shift = min_shift
        self.max_keys = max_keys
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[ModelKey, _ModelState] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """How many model versions currently hold learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "ScoreDriftDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, PredictionEvent) or event.is_feedback or event.score is None:
            return None
        score = float(event.score)
        if not math.isfinite(score):
            return None
        key = (event.model_id, event.model_version)
        state = self._state_for(key)
        alarm = state.cusum.update(event.ts, score)
        return None if alarm is None else self._settle(key, event, state, alarm)

    def update_many(self, events: Sequence[Event]) -> list[Positioned]:
        """What ``update`` on each event in turn finds, with positions; each version's scores as one stream."""
        return self.update_batch(Batch(events))

    def update_batch(self, batch: Batch) -> list[Positioned]:
        """``update_many`` over a batch shared with other detectors (its predictions grouped by version once).

        Versions share nothing but the LRU table, so unless the batch could evict one, each
        version's scores go through its ``RankCusum.update_many`` together; else event by event.
        """
        streams = _score_streams(batch)
        if not fits_without_eviction(self._states, streams, self.max_keys):
            return [(position, finding) for position, event in enumerate(batch.events)
                    if (finding := self.update(event)) is not None]
        found: list[Positioned] = []
        for key, stream in streams.items():
            found.extend(self._learn_stream(key, *stream))
        touch_in_order(self._states, {key: positions[-1] for key, (positions, _, _) in streams.items()})
        found.sort(key=itemgetter(0))
        return found

    def _learn_stream(
        self, key: ModelKey, positions: list[int], batch: list[PredictionEvent], values: FloatArray,
    ) -> list[Positioned]:
        stamps = list(map(_ts, batch))
        state, found, index = self._state_for(key), [], 0
        while (crossing := state.cusum.update_many(stamps, values, index)) is not None:
            index, alarm = crossing
            finding = self._settle(key, batch[index], state, alarm)
            if finding is not None:
                found.append((positions[index], finding))
            state, index = self._states[key], index + 1
        return found

    def _settle(self, key: ModelKey, event: PredictionEvent, state: _ModelState, alarm: CusumAlarm) -> Finding | None:
        """Judge a crossing: a finding starts a new reference, a crossing too small to report is forgotten."""
        finding = self._judge(event, state, alarm)
        if finding is None:
            state.cusum.quiet()
        else:
            # The new regime becomes the reference to learn from scratch: one change, one finding.
            self._states[key] = self._new_state()
        return finding

    def _new_state(self) -> _ModelState:
        return _ModelState(RankCusum(self.slack, self.threshold, self.warmup, self.max_reference))

    def _state_for(self, key: ModelKey) -> _ModelState:
        return lru_get(self._states, key, self.max_keys, self._new_state)

    def _judge(self, event: PredictionEvent, state: _ModelState, alarm: CusumAlarm) -> Finding | None:
        baseline = _reference_moments(state)
        recent = alarm.recent
        shift = recent.mean - baseline.mean
        effect = abs(shift) / max(baseline.std, 1e-9)
        if abs(shift) < self.min_shift or effect < self.min_effect:
            return None
        start = min(alarm.start_ts, event.ts)
        evidence = {
            "baseline_mean": f"{baseline.mean:.4f}",
            "baseline_std": f"{baseline.std:.4f}",
            "recent_mean": f"{recent.mean:.4f}",
            "recent_std": f"{recent.std:.4f}",
            "n_before": str(int(baseline.n)),
            "n_after": str(int(recent.n)),
            "mean_shift": f"{shift:+.4f}",
            "effect_size_cohens_d": f"{effect:.3f}",
            "recent_mean_rank": f"{alarm.mean_rank:.4f}",
            "cusum_slack": f"{self.slack:g}",
            "cusum_threshold": f"{self.threshold:g}",
            "change_began": iso_utc(start),
        }
        return Finding(
            kind=self.kind,
            detector=self.name,
            ts=event.ts,
            window_start=start,
            window_end=event.ts,
            score=effect,
            threshold=self.min_effect,
            strength=min(1.0, effect / 2.0),
            summary=_summary(event, baseline, recent, effect, start, self.threshold),
            model_id=event.model_id,
            model_version=event.model_version,
            evidence=evidence,
            recommended_actions=(
                f"Hold automated decisions from {event.model_id}:{event.model_version} for human review",
                "Compare recent inputs with the training data to find the shifted features",
                "Roll back to the previous model version if the shift is not explained by real-world change",
            ),
        )


def _score_streams(batch: Batch) -> dict[ModelKey, _Stream]:
    """The scores ``update`` would learn (``float`` of each finite one), per model version in first-seen order."""
    streams: dict[ModelKey, _Stream] = {}
    for key, (positions, events) in batch.predictions_by_version().items():
        values = np.array(list(map(_score, events)), dtype=np.float64)  # numpy reads None as NaN
        finite = np.isfinite(values)
        if finite.all():
            streams[key] = (positions, events, values)
        elif finite.any():
            kept = np.flatnonzero(finite).tolist()
            streams[key] = ([positions[index] for index in kept], [events[index] for index in kept], values[finite])
    return streams


def _reference_moments(state: _ModelState) -> Moments:
    """Moments of the reference sample (the stable past the scores are ranked against)."""
    moments = Moments()
    for value in state.cusum.reference:
        moments.update(value)
    return moments


def _summary(
    event: PredictionEvent, baseline: Moments, recent: Moments, effect: float, start: int, threshold: float
) -> str:
    direction = "up" if recent.mean > baseline.mean else "down"
    return (
        f"Prediction scores of model {event.model_id} version {event.model_version} moved {direction} "
        f"from mean {baseline.mean:.3f} (std {baseline.std:.3f}, {int(baseline.n)} predictions) to "
        f"{recent.mean:.3f} over the last {int(recent.n)} predictions, since about {iso_utc(start)}; "
        f"effect size d={effect:.2f}, confirmed by a rank CUSUM crossing {threshold:g}. "
        f"Hold its automated decisions for review and check recent inputs against the training data."
    )
