"""Feature drift: the values of one input feature of a model version moved away from their reference.

Each ``(model_id, model_version, feature)`` feeds a two-sided CUSUM on the values' mid-ranks
in a reference sample of the feature's own past (``RankCusum``): the first ``warmup``
values, once stable, growing to ``max_reference``. A mid-rank is a number in [0, 1] whose
mean is 0.5 whatever the feature's scale, skew or ties (a lognormal amount and a small
integer count look alike), standardised by the reference's own mid-rank spread. CUSUM
accumulates evidence, so a large shift is caught within tens of values, a small one or a
slow ramp as soon as the evidence adds up; the threshold is set by the in-control run length
per feature, not per check. A crossing only becomes a finding when the run that crossed
moved the mean rank by at least ``min_effect`` reference standard deviations over at least
``min_recent`` values. After a finding the feature relearns a reference from the new regime,
and further crossings within ``cooldown_ms`` (a ramp still under way) are learned silently:
one change, one finding.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter, itemgetter
from typing import Callable, ClassVar, Mapping, Sequence

import numpy as np

from detectors._columns import table as feature_table
from detectors._lru import fits_without_eviction, lru_get, touch_in_order
from detectors._regime import CusumAlarm, FloatArray, RankCusum, affected, iso_utc
from detectors.base import Positioned, fresh_copy, register
from detectors.batch import Batch
from detectors.events import Event, PredictionEvent
from detectors.findings import Finding

_ts, _features = attrgetter("ts"), attrgetter("features")

ModelKey = tuple[str, str]
_Column = tuple[list[int], FloatArray]  # a feature's finite values in a batch and the events they came from
_Candidate = tuple[int, str, Finding]  # event index in the batch, feature, finding


@dataclass
class _FeatureState:
    """One feature: its rank CUSUM against its own past since the last finding."""

    cusum: RankCusum
    quiet_until: int = -1  # event time before which a crossing is learned but not reported


@dataclass
class _ModelState:
    first_ts: int
    predictions: int = 0
    features: dict[str, _FeatureState] = field(default_factory=dict)


@register("feature_drift")
class FeatureDriftDetector:
    """Finds a lasting change in the distribution of a model's input feature.

    Example: feature ``x`` of ``churn:v1`` moves from N(0, 1) to N(0.8, 1) at event 3000;
    ``amount`` and ``visits`` never change.

    >>> from detectors._testing import feature_stream
    >>> events = feature_stream(seed=5, n=8_000, change_at=3_000, shift=0.8)
    >>> detector = FeatureDriftDetector()
    >>> [(i, f.evidence["feature"]) for i, e in enumerate(events) if (f := detector.update(e))]
    [(3046, 'x')]
    """

    name: ClassVar[str] = "feature_drift"
    event_types: ClassVar[tuple[type, ...]] = (PredictionEvent,)
    kind: ClassVar[str] = "feature_drift"

    def __init__(
        self,
        slack: float = 0.25,
        threshold: float = 30.0,
        warmup: int = 500,
        max_reference: int = 1000,
        min_recent: int = 10,
        min_effect: float = 0.3,
        max_features: int = 50,
        max_keys: int = 10_000,
        cooldown_ms: int = 6 * 3_600_000,
    ) -> None:
        self.slack = slack
        self.threshold = threshold
        self.warmup = warmup
        self.max_reference = max_reference
        self.min_recent = min_recent
        self.min_effect = min_effect
        self.max_features = max_features
        self.max_keys = max_keys
        self.cooldown_ms = cooldown_ms
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[ModelKey, _ModelState] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """Model versions holding learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "FeatureDriftDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, PredictionEvent) or event.is_feedback or not event.features:
            return None
        state = self._state_for((event.model_id, event.model_version), event.ts)
        state.predictions += 1
        found = None
        for feature in sorted(event.features):
            value = float(event.features[feature])
            feature_state = self._feature_state(state, feature)
            if feature_state is None or not math.isfinite(value):
                continue
            finding = self._learn(event, state, feature, feature_state, value)
            if finding is not None and (found is None or finding.score > found.score):
                found = finding
        return found

    def update_many(self, events: Sequence[Event]) -> list[Positioned]:
        """What ``update`` on each event in turn finds, with positions; each feature's values as one stream."""
        return self.update_batch(Batch(events))

    def update_batch(self, batch: Batch) -> list[Positioned]:
        """``update_many`` over a batch shared with other detectors (its predictions grouped by version once).

        Versions share nothing but the LRU table and features of a version nothing at all, so
        unless the batch could evict a version, each feature's values in the batch go through
        its ``RankCusum.update_many`` together; else event by event.
        """
        by_version = batch.predictions_with_features()
        if not fits_without_eviction(self._states, by_version, self.max_keys):
            return [(position, finding) for position, event in enumerate(batch.events)
                    if (finding := self.update(event)) is not None]
        found: list[Positioned] = []
        for key, (positions, events) in by_version.items():
            found.extend(self._learn_model(key, positions, events, partial(batch.feature_table, key),
                                           batch.feature_maps(key)))
        touch_in_order(self._states, {key: positions[-1] for key, (positions, _) in by_version.items()})
        found.sort(key=itemgetter(0))
        return found

    def _learn_model(self, key: ModelKey, positions: list[int], batch: list[PredictionEvent],
                     table_of: Callable[[tuple[str, ...]], FloatArray] | None = None,
                     maps: list[Mapping[str, float]] | None = None) -> list[Positioned]:
        state = self._state_for(key, batch[0].ts)
        seen_before = state.predictions
        state.predictions += len(batch)
        stamps = list(map(_ts, batch))
        candidates: list[_Candidate] = []
        for feature, column in _feature_columns(batch, table_of, maps).items():  # in the order update creates them
            if self._feature_state(state, feature) is not None:
                candidates.extend(self._learn_column(state, feature, column, batch, stamps, seen_before))
        return [(positions[index], finding) for index, finding in _strongest_per_event(candidates)]

    def _learn_column(
        self, state: _ModelState, feature: str, column: _Column, batch: list[PredictionEvent], batch_stamps: list[int],
        seen_before: int,
    ) -> list[_Candidate]:
        indices, values = column
        stamps = batch_stamps if len(indices) == len(batch) else [batch_stamps[index] for index in indices]
        found, at = [], 0
        while (crossing := state.features[feature].cusum.update_many(stamps, values, at)) is not None:
            at, alarm = crossing
            index = indices[at]
            finding = self._settle(batch[index], state, feature, state.features[feature], alarm,
                                   seen_before + index + 1)
            if finding is not None:
                found.append((index, feature, finding))
            at += 1
        return found

    def _new_feature_state(self, quiet_until: int = -1) -> _FeatureState:
        return _FeatureState(RankCusum(self.slack, self.threshold, self.warmup, self.max_reference), quiet_until)

    def _feature_state(self, state: _ModelState, feature: str) -> _FeatureState | None:
        feature_state = state.features.get(feature)
        if feature_state is None and len(state.features) < self.max_features:
            feature_state = state.features[feature] = self._new_feature_state()
        return feature_state

    def _learn(
        self, event: PredictionEvent, state: _ModelState, feature: str, feature_state: _FeatureState, value: float
    ) -> Finding | None:
        alarm = feature_state.cusum.update(event.ts, value)
        if alarm is None:
            return None
        return self._settle(event, state, feature, feature_state, alarm, state.predictions)

    def _settle(
        self, event: PredictionEvent, state: _ModelState, feature: str, feature_state: _FeatureState,
        alarm: CusumAlarm, predictions: int,
    ) -> Finding | None:
        """Judge a crossing after ``predictions`` of the version: a finding, or learned silently."""
        scale = feature_state.cusum.scale
        effect = abs(alarm.mean_rank - 0.5) / scale
        if alarm.n < self.min_recent or effect < self.min_effect:
            feature_state.cusum.quiet()
            return None
        # The new regime becomes the reference to learn from scratch: one change, one finding.
        state.features[feature] = self._new_feature_state(quiet_until=event.ts + self.cooldown_ms)
        if event.ts < feature_state.quiet_until:
            return None
        n_before = len(feature_state.cusum.reference)
        hit = affected(predictions, min(alarm.start_ts, event.ts), state.first_ts, event.ts)
        return self._finding(event, feature, alarm, effect, n_before, hit)

    def _state_for(self, key: ModelKey, ts: int) -> _ModelState:
        return lru_get(self._states, key, self.max_keys, lambda: _ModelState(ts))

    def _finding(
        self, event: PredictionEvent, feature: str, alarm: CusumAlarm, effect: float, n_before: int, hit: int,
    ) -> Finding:
        start = min(alarm.start_ts, event.ts)
        evidence = {
            "feature": feature,
            "baseline_mean_rank": "0.5000",
            "recent_mean_rank": f"{alarm.mean_rank:.4f}",
            "recent_mean_value": f"{alarm.recent.mean:.4g}",
            "n_before": str(n_before),
            "n_after": str(alarm.n),
            "effect_size_std": f"{effect:.3f}",
            "affected_predictions": str(hit),
            "cusum_slack": f"{self.slack:g}",
            "cusum_threshold": f"{self.threshold:g}",
            "change_began": iso_utc(start),
        }
        strength = min(1.0, effect / (3 * self.min_effect))
        return Finding(
            kind=self.kind, detector=self.name, ts=event.ts, window_start=start, window_end=event.ts,
            score=effect, threshold=self.min_effect, strength=strength,
            summary=_summary(event, feature, alarm, effect, n_before, hit, start),
            model_id=event.model_id, model_version=event.model_version, evidence=evidence,
            recommended_actions=(
                f"Check the upstream pipeline that produces feature {feature!r} (schema, units, missing values)",
                f"Review decisions of {event.model_id}:{event.model_version} made since {iso_utc(start)}",
                "If the world really changed, retrain on recent data; if the pipeline broke, fix it and backfill",
            ),
        )


def _feature_columns(batch: list[PredictionEvent], table_of: Callable[[tuple[str, ...]], FloatArray] | None = None,
                     maps: list[Mapping[str, float]] | None = None) -> dict[str, _Column]:
    """Each feature's finite values in ``batch``, by first appearance (sorted within an event, as ``update`` goes).

    Predictions of one version nearly always carry the same features: then one numpy array
    converts and checks them all (``table_of(names)``, when given: the batch's shared table; ``maps``, when
    given: the events' feature maps, the batch's).
    """
    names = tuple(sorted(batch[0].features))
    maps = list(map(_features, batch)) if maps is None else maps
    if sum(map(len, maps)) == len(names) * len(batch):
        try:
            # float of each value, as ``update`` takes them
            table = table_of(names) if table_of is not None else feature_table(maps, names)
        except (KeyError, TypeError, ValueError):  # another feature in place of one of these, or not a float
            return _ragged_columns(batch)
        if np.isfinite(table).all():
            every = list(range(len(batch)))
            return {name: (every, values) for name, values in zip(names, table.T)}
    return _ragged_columns(batch)


def _ragged_columns(batch: list[PredictionEvent]) -> dict[str, _Column]:
    """``_feature_columns`` for a batch whose predictions carry different features, one value at a time."""
    columns: dict[str, tuple[list[int], list[float]]] = {}
    for index, event in enumerate(batch):
        for name in sorted(event.features):
            value = float(event.features[name])
            indices, values = columns.setdefault(name, ([], []))
            if math.isfinite(value):
                indices.append(index)
                values.append(value)
    return {name: (indices, np.array(values, dtype=np.float64)) for name, (indices, values) in columns.items()}


def _strongest_per_event(candidates: list[_Candidate]) -> list[tuple[int, Finding]]:
    """Per event, the first finding (in feature order) with the highest score, as ``update`` returns it."""
    strongest: dict[int, Finding] = {}
    for index, _, finding in sorted(candidates, key=itemgetter(0, 1)):
        if index not in strongest or finding.score > strongest[index].score:
            strongest[index] = finding
    return list(strongest.items())


def _summary(
    event: PredictionEvent, feature: str, alarm: CusumAlarm, effect: float, n_before: int, hit: int, start: int,
) -> str:
    direction = "higher" if alarm.direction > 0 else "lower"
    return (
        f"Input feature {feature!r} of model {event.model_id} version {event.model_version} shifted {direction}: "
        f"its mean position in the reference distribution ({n_before} earlier values) moved from 0.500 "
        f"to {alarm.mean_rank:.3f} over the last {alarm.n} values (mean value {alarm.recent.mean:.4g}), "
        f"since about {iso_utc(start)} (effect {effect:.2f} standard deviations of rank). "
        f"About {hit} predictions made since then used the shifted input and may be wrong; "
        f"check the feature's upstream pipeline before trusting them."
    )
