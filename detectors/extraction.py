"""Model extraction: a principal's predictions look like someone mapping the model, not using it.

Two signatures in the ``PredictionEvent`` stream of one principal on one model version:

* **boundary probing** - the share of its last ``window`` scores within ``band`` of 0.5 is
  far above the model's population share (a River EW mean over all the model's scores):
  at least ``ratio`` times it, at least ``min_fraction``, and a binomial z-score of at
  least ``z_threshold``. Population drift (every caller's scores move together) moves
  the population share too, so it does not look like probing;
* **feature sweep** - ``sweep_length`` queries that each change exactly one feature, the
  same one, in the same direction, with every other feature fixed. Up to
  ``max_interleaved`` queries in a row that move other features (the principal's ordinary
  traffic) are skipped, not a break: each step is compared with the sweep's last step.

Both are reported as kind ``query_burst`` (extraction is a query abuse) by the detector
``extraction``. After a finding, the principal stays flagged while the signal persists
and for ``quiet_ms`` of event time after it; only then can it produce a new finding.
Principal and model state share one LRU of ``max_keys`` entries.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter
from typing import ClassVar, Mapping, Sequence

from river import stats

from detectors._compiled import extraction_kernel
from detectors._lru import touch_in_order
from detectors.base import Positioned, fresh_copy, register
from detectors.batch import Batch
from detectors.events import Event, PredictionEvent
from detectors.findings import Finding

_ModelKey = tuple[str, str]
_PrincipalKey = tuple[str, str, str]
_Population = tuple[stats.EWMean, list[int]]  # near-boundary share, predictions seen
_ABSENT = object()  # a feature the previous query did not have


@dataclass
class _Sweep:
    feature: str = ""
    direction: int = 0
    length: int = 0
    start_ts: int = 0
    first_value: float = 0.0
    last_value: float = 0.0
    anchor: dict[str, float] | None = None  # the features of the sweep's last step
    misses: int = 0  # queries in a row since then that did not fit


@dataclass
class _PrincipalState:
    recent: deque[tuple[int, bool]]
    near: int = 0
    last_features: Mapping[str, float] | None = None  # a copy, except within ``update_many``
    last_ts: int = 0
    sweep: _Sweep = field(default_factory=_Sweep)
    flagged_until: int | None = None


@dataclass(frozen=True)
class _Signal:
    check: str
    score: float
    threshold: float
    window_start: int
    evidence: dict[str, str]
    what: str


@register("extraction")
class ExtractionDetector:
    """Finds a principal probing a model's decision boundary or sweeping one feature.

    Example: five services call ``credit:v7`` (scores Beta(2, 5), about 9% within 0.05 of
    0.5); from prediction 3000 a third of the calls come from ``scraper``, whose scores sit
    at the boundary, and it is caught after 100 of its queries. Another ``scraper`` raises
    ``amount`` step by step with every other feature fixed and is caught at its 20th step (21st query).

    >>> from detectors._testing import prediction_traffic
    >>> detector = ExtractionDetector()
    >>> events = prediction_traffic(seed=1, n=6000, attacker="scraper", attack_at=3000)
    >>> [(i, f.principal, f.evidence["check"]) for i, e in enumerate(events) if (f := detector.update(e))]
    [(3297, 'scraper', 'boundary_probing')]
    >>> detector = ExtractionDetector()
    >>> events = prediction_traffic(seed=1, n=6000, attacker="scraper", attack_at=3000, attack="sweep")
    >>> [(i, f.principal, f.evidence["check"]) for i, e in enumerate(events) if (f := detector.update(e))]
    [(3060, 'scraper', 'feature_sweep')]
    """

    name: ClassVar[str] = "extraction"
    event_types: ClassVar[tuple[type, ...]] = (PredictionEvent,)
    kind: ClassVar[str] = "query_burst"

    def __init__(
        self,
        band: float = 0.05,
        window: int = 200,
        min_predictions: int = 100,
        ratio: float = 2.5,
        min_fraction: float = 0.25,
        z_threshold: float = 5.0,
        population_fading_factor: float = 0.002,
        min_population: int = 500,
        sweep_length: int = 20,
        max_features: int = 256,
        quiet_ms: int = 3_600_000,
        max_keys: int = 100_000,
        max_interleaved: int = 3,
    ) -> None:
        self.band = band
        self.window = window
        self.min_predictions = min_predictions
        self.ratio = ratio
        self.min_fraction = min_fraction
        self.z_threshold = z_threshold
        self.population_fading_factor = population_fading_factor
        self.min_population = min_population
        self.sweep_length = sweep_length
        self.max_features = max_features
        self.quiet_ms = quiet_ms
        self.max_keys = max_keys
        self.max_interleaved = max_interleaved
        self._reset()

    def _reset(self) -> None:
        # Population near-boundary share per model version, and per-principal state; one budget.
        self._models: OrderedDict[_ModelKey, _Population] = OrderedDict()
        self._principals: OrderedDict[_PrincipalKey, _PrincipalState] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """Model versions plus principals holding learned state (never above ``max_keys``)."""
        return len(self._models) + len(self._principals)

    def clone(self) -> "ExtractionDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        found = self.update_many((event,))
        return found[0][1] if found else None

    def update_many(self, events: Sequence[Event]) -> list[Positioned]:
        """Findings over ``events`` taken in order, with their positions (``update`` is a batch of one)."""
        if len(events) == 1:  # ``update``: event by event, without a shared batch to set up
            return self._in_order(events)
        return self.update_batch(Batch(events))

    def update_batch(self, batch: Batch) -> list[Positioned]:
        """``update_many`` over a batch shared with other detectors (its predictions grouped by version once).

        A principal is judged against its model's population share at that very moment, so a
        version's events go strictly one by one; but versions share nothing except the LRU
        tables, so unless the batch could evict a key, it is learned version by version from
        the batch's grouping, the tables then left in per-event order. Else event by event.
        """
        # A prediction adds at most two keys (its version's population and its principal's window).
        might_evict = len(self._models) + len(self._principals) + 2 * len(batch.events) > self.max_keys
        if len(batch.events) == 1 or might_evict:  # grouping one event only costs
            return self._in_order(batch.events)
        found: list[Positioned] = []
        last_touch: dict[_PrincipalKey, tuple[int, _PrincipalState]] = {}
        models_touched = {}
        for key, (positions, events) in batch.predictions_by_version().items():
            if (last := self._learn_run(key, positions, events, found, last_touch)) >= 0:
                models_touched[key] = last
        touch_in_order(self._models, models_touched)
        touch_in_order(self._principals, {key: position for key, (position, _) in last_touch.items()})
        found.sort(key=itemgetter(0))
        _copy_last_features(last_touch)
        return found

    def _in_order(self, events: Sequence[Event]) -> list[Positioned]:
        """``update_batch`` event by event, each a run of one (a key may be evicted at any event)."""
        found: list[Positioned] = []
        last_touch: dict[_PrincipalKey, tuple[int, _PrincipalState]] = {}
        for position, event in enumerate(events):
            if isinstance(event, PredictionEvent) and (event.label is None or event.features):
                self._learn_run((event.model_id, event.model_version), [position], [event], found, last_touch)
        _copy_last_features(last_touch)
        return found

    def _learn_run(self, model_key: _ModelKey, positions: list[int], events: list[PredictionEvent],
                   found: list[Positioned], last_touch: dict[_PrincipalKey, tuple[int, _PrincipalState]]) -> int:
        """Learn one model version's predictions in order; the position of the last with a score (-1: none).

        Compiled (``detectors/_extraction.c``); what the compiled loop declines (a score, time or
        feature map of an unusual type) and everything after it in the run goes to ``_py_learn_run``.
        """
        if extraction_kernel is None:
            return self._py_learn_run(model_key, positions, events, found, last_touch)
        settings = (self.band, self.max_features, self.min_predictions, self.min_population, self.min_fraction,
                    self.min_predictions // 5, self.sweep_length, self.max_interleaved)
        stop, population, last = extraction_kernel.learn_run(self, model_key, positions, events, 0, None, -1, found,
                                                             last_touch, PredictionEvent, settings)
        if stop == len(events):
            return last
        return self._py_learn_run(model_key, positions, events, found, last_touch, stop, population, last)

    def _py_learn_run(self, model_key: _ModelKey, positions: list[int], events: list[PredictionEvent],
                      found: list[Positioned], last_touch: dict[_PrincipalKey, tuple[int, _PrincipalState]],
                      start: int = 0, population: _Population | None = None, last: int = -1) -> int:
        """``_learn_run`` in Python from ``events[start]`` on (``population`` and ``last``: the run's so far).

        The reference of the compiled loop: settings in locals, a principal's last features
        copied once per batch rather than per query, and the signals computed only for a
        principal past their cheap bars. The version's population is looked up at its first
        scored prediction.
        """
        band, principals, max_features = self.band, self._principals, self.max_features
        min_predictions, min_population, min_fraction = self.min_predictions, self.min_population, self.min_fraction
        crowd, sweep_length, interleaved = self.min_predictions // 5, self.sweep_length, self.max_interleaved
        for position, event in zip(positions[start:], events[start:]) if start else zip(positions, events):
            if event.score is None:
                continue
            near = abs(event.score - 0.5) < band
            if population is None:
                population = self._population_for(model_key)
            last = position
            population_n = population[1][0]
            if event.principal is None:
                _learn_population(population, near)
                continue
            key = (event.principal, model_key[0], model_key[1])
            if (state := principals.get(key)) is None:
                state = self._new_principal(key)
            else:
                principals.move_to_end(key)
            last_touch[key] = (position, state)
            recent = state.recent
            if len(recent) == recent.maxlen and recent[0][1]:
                state.near -= 1
            recent.append((event.ts, near))
            state.near += near
            features = event.features
            if len(features) <= max_features:
                sweep, last_features = state.sweep, state.last_features
                if last_features is not None and not (sweep.length and _continue_sweep(sweep, features, interleaved)):
                    _extend_sweep(sweep, last_features, features, state.last_ts)
                state.last_features, state.last_ts = features, event.ts  # copied at the end of the batch
            n = len(recent)
            boundary = n >= min_predictions and population_n >= min_population and state.near / n >= min_fraction
            share = population[0].get() if boundary else 0.0  # the share before this prediction is learned
            crowding = n >= crowd and state.near >= min_fraction * n
            if not (crowding or state.flagged_until is not None and recent[-1][0] < state.flagged_until):
                population[0].update(1.0 if near else 0.0)  # a prober's scores would hide it in the population share
                population[1][0] += 1
            if state.sweep.length >= sweep_length:
                signal = self._sweep_signal(state)
            elif boundary:
                signal = self._boundary_signal(state, share, population_n)
            else:
                continue
            if signal is not None and (finding := self._flag(state, event, signal)) is not None:
                found.append((position, finding))
        return last

    def _population_for(self, key: _ModelKey) -> _Population:
        """The version's population share, marked as just used (or new)."""
        if (population := self._models.get(key)) is None:
            return self._new_population(key)
        self._models.move_to_end(key)
        return population

    def _new_population(self, key: _ModelKey) -> _Population:
        entry = self._models[key] = (stats.EWMean(self.population_fading_factor), [0])
        self._evict()
        return entry

    def _new_principal(self, key: _PrincipalKey) -> _PrincipalState:
        state = self._principals[key] = _PrincipalState(deque(maxlen=self.window))
        self._evict()
        return state

    def _flag(self, state: _PrincipalState, event: PredictionEvent, signal: _Signal) -> Finding | None:
        """A finding, unless the principal is still flagged for the same campaign (which goes on)."""
        quiet = state.flagged_until is not None and event.ts < state.flagged_until
        state.flagged_until = event.ts + self.quiet_ms
        return None if quiet else self._finding(event, signal)

    def _evict(self) -> None:
        while len(self._models) + len(self._principals) > self.max_keys:
            larger = self._principals if len(self._principals) >= len(self._models) else self._models
            larger.popitem(last=False)

    def _boundary_signal(self, state: _PrincipalState, share: float, population_n: int) -> _Signal | None:
        n = len(state.recent)
        if n < self.min_predictions or population_n < self.min_population:
            return None
        expected = min(max(share, 0.01), 0.99)
        fraction = state.near / n
        z = (state.near - n * expected) / math.sqrt(n * expected * (1 - expected))
        if fraction < max(self.min_fraction, self.ratio * expected) or z < self.z_threshold:
            return None
        evidence = {
            "check": "boundary_probing",
            "band": f"{self.band:g}",
            "principal_near_boundary_share": f"{fraction:.4f}",
            "population_near_boundary_share": f"{expected:.4f}",
            "ratio": f"{fraction / expected:.2f}",
            "z_score": f"{z:.1f}",
            "principal_predictions": str(n),
            "population_predictions": str(population_n),
        }
        what = (
            f"{state.near} of its last {n} scores ({fraction:.1%}) lie within {self.band:g} of the 0.5 decision "
            f"boundary against {expected:.1%} for all {population_n} of the model's predictions "
            f"({fraction / expected:.1f}x, z={z:.1f})"
        )
        return _Signal("boundary_probing", fraction / expected, self.ratio, state.recent[0][0], evidence, what)

    def _sweep_signal(self, state: _PrincipalState) -> _Signal | None:
        sweep = state.sweep
        if sweep.length < self.sweep_length:
            return None
        direction = "upward" if sweep.direction > 0 else "downward"
        evidence = {
            "check": "feature_sweep",
            "feature": sweep.feature,
            "direction": direction,
            "consecutive_queries": str(sweep.length),
            "from_value": f"{sweep.first_value:g}",
            "to_value": f"{sweep.last_value:g}",
            "sweep_threshold": str(self.sweep_length),
        }
        what = (
            f"its last {sweep.length} queries changed only feature {sweep.feature}, always {direction} "
            f"(from {sweep.first_value:g} to {sweep.last_value:g}), with every other feature fixed"
        )
        return _Signal("feature_sweep", float(sweep.length), float(self.sweep_length), sweep.start_ts, evidence, what)

    def _finding(self, event: PredictionEvent, signal: _Signal) -> Finding:
        principal = event.principal or ""
        model = f"{event.model_id}:{event.model_version}"
        summary = (
            f"Principal {principal} appears to be extracting model {model}: {signal.what}, since "
            f"{_iso(signal.window_start)} (detected {_iso(event.ts)}). A copy of the model or its decision "
            f"boundary may be leaving through the prediction API. Rate-limit {principal} on {model}, return "
            f"coarser scores to it, and confirm the traffic with its owner."
        )
        return Finding(
            kind=self.kind,
            detector=self.name,
            ts=event.ts,
            window_start=signal.window_start,
            window_end=event.ts,
            score=signal.score,
            threshold=signal.threshold,
            strength=min(1.0, 0.5 + 0.15 * signal.score / signal.threshold),
            summary=summary,
            model_id=event.model_id,
            model_version=event.model_version,
            principal=principal,
            evidence={**signal.evidence, "model": model},
            recommended_actions=(
                f"Rate-limit queries by {principal} on {model}",
                f"Return rounded scores or labels only to {principal} while investigating",
                f"Confirm the traffic with the owner of {principal}; rotate its credentials if unknown",
            ),
        )


def _copy_last_features(last_touch: Mapping[_PrincipalKey, tuple[int, _PrincipalState]]) -> None:
    """Copy the last features of the principals a batch touched (the sweep compared the events' own maps)."""
    for _, state in last_touch.values():
        if state.last_features is not None:
            state.last_features = dict(state.last_features)


def _learn_population(population: _Population, near: bool) -> None:
    population[0].update(1.0 if near else 0.0)
    population[1][0] += 1


def _continue_sweep(sweep: _Sweep, current: Mapping[str, float], max_interleaved: int) -> bool:
    """Whether ``current`` extends a running sweep from its last step, or is tolerated beside it."""
    anchor = sweep.anchor
    if not sweep.length or anchor is None or anchor.keys() != current.keys():
        return False
    changed = [name for name in current if current[name] != anchor[name]]
    if not changed:
        return True  # a repeated query neither extends nor breaks a sweep
    if changed == [sweep.feature]:
        if (current[sweep.feature] - anchor[sweep.feature]) * sweep.direction < 0:
            return False  # the swept feature turned back: the sweep is broken
        sweep.length += 1
        sweep.last_value = current[sweep.feature]
        sweep.anchor, sweep.misses = dict(current), 0
        return True
    sweep.misses += 1  # other features moved: another query of the principal's, skipped
    return sweep.misses <= max_interleaved


def _extend_sweep(sweep: _Sweep, previous: Mapping[str, float], current: Mapping[str, float], last_ts: int) -> None:
    """Grow the run of one-feature-at-a-time monotone changes, or restart or break it."""
    name = None
    for feature in current:
        if current[feature] != previous.get(feature, _ABSENT):
            if name is not None:  # a second feature moved, or the two queries' features differ
                sweep.length = 0
                return
            name = feature
    if len(previous) != len(current) or name is not None and name not in previous:  # not the same features
        sweep.length = 0
        return
    if name is None:
        return  # a repeated query neither extends nor breaks a sweep
    direction = 1 if current[name] > previous[name] else -1
    if sweep.length and sweep.feature == name and sweep.direction == direction:
        sweep.length += 1
    else:
        sweep.feature, sweep.direction, sweep.length = name, direction, 1
        sweep.start_ts, sweep.first_value = last_ts, previous[name]
    sweep.last_value = current[name]
    sweep.anchor, sweep.misses = dict(current), 0


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
