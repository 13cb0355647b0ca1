"""Input anomaly: a source (principal) sends a model inputs unlike anything it normally sees.

Per ``(model_id, model_version)`` the first ``warmup`` feature vectors fix the feature set
and robust limits (the 1st-99th percentile, widened by a margin) that scale features into
the unit box River's ``anomaly.HalfSpaceTrees`` expects. The next ``calibration`` events
are learned without judgement. From then on every event is scored; a streaming quantile
(River ``stats.Quantile``) of the scores is the thresholder: an event is anomalous when its
score exceeds the ``q`` quantile. The quantile learns each score capped at the current
threshold, so a flood of odd inputs cannot raise the bar, and anomalous events are never
learned by the trees (anomalous traffic is not learned as normal).

Cost: River's trees take ~9 µs to score and ~11 µs to learn one event in Python. The
detector keeps the trees River grows as arrays (``detectors._halfspace``, bit-identical
scores) and judges a micro-batch with a few numpy steps: ~1.5 µs per event in batches of
~1,000, where the thresholder and the principals' windows stay sequential; a lone
``update`` costs about what River's own walk did. Learning only every ``learn_every``-th
normal event (default 4) lets the trees' window span ``4 x window_size`` events of recent
normal traffic.

Anomalous events count per principal in ``window_ms`` one-minute buckets. A principal
becomes a finding when its anomalous events in the window reach ``min_anomalies``, are at
least ``min_rate`` of its events and ``rate_factor`` times the base rate, and the count is
``min_z`` standard deviations above the base rate's binomial expectation. A reported
principal is re-armed only once its window falls back below the rate: one source sending
odd inputs is one finding, not one per event.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from operator import itemgetter
from typing import Callable, ClassVar, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from river import stats

from detectors._columns import table as feature_table
from detectors._compiled import COMPILED_FROM, int64_safe, judge_kernel
from detectors._halfspace import HalfSpaceForest, Leaves, Rows
from detectors._lru import fits_without_eviction, lru_get, touch_in_order
from detectors._regime import iso_utc
from detectors.base import Positioned, fresh_copy, register
from detectors.batch import Batch
from detectors.events import Event, PredictionEvent
from detectors.findings import Finding

ModelKey = tuple[str, str]
MINUTE_MS = 60_000
#: A judged event: its position in the batch, whether it was anomalous, the event.
Verdict = tuple[int, bool, PredictionEvent]


@dataclass(frozen=True)
class _Scaler:
    """A model version's warm-up limits, mapping a batch of feature vectors into the unit box."""

    names: tuple[str, ...]
    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    span: npt.NDArray[np.float64]
    midpoints: tuple[float, ...]

    @classmethod
    def from_limits(cls, limits: dict[str, tuple[float, float]]) -> "_Scaler":
        lows = np.array([low for low, _ in limits.values()], dtype=np.float64)
        highs = np.array([high for _, high in limits.values()], dtype=np.float64)
        midpoints = tuple((low + high) / 2 for low, high in limits.values())
        return cls(tuple(limits), lows, highs, highs - lows, midpoints)

    def rows(self, vectors: Sequence[Mapping[str, float]],
             table_of: Callable[[tuple[str, ...]], Rows] | None = None) -> Rows:
        """One row per vector: a missing feature sits mid-range, a non-finite one at the top, all clipped to [0, 1].

        ``table_of(names)``, when given, is the vectors' table shared with other detectors (never written to).
        """
        try:
            values = table_of(self.names) if table_of is not None else feature_table(vectors, self.names)
        except KeyError:
            filled = (map(vector.get, self.names, self.midpoints) for vector in vectors)
            flat = np.fromiter(chain.from_iterable(filled), np.float64, len(vectors) * len(self.names))
            values = flat.reshape(len(vectors), len(self.names))
        finite = np.isfinite(values)
        if not finite.all():
            values = np.where(finite, values, self.high)
        scaled: Rows = values - self.low
        with np.errstate(divide="ignore", invalid="ignore"):  # a span of 0 (a feature constant at a large
            scaled /= self.span  # magnitude during warm-up) makes 0/0: NaN, and x/0: +-inf
        np.fmax(scaled, 0.0, out=scaled)  # Python's max(0.0, x): NaN becomes 0.0
        return np.minimum(scaled, 1.0, out=scaled)


@dataclass
class _ModelState:
    """One model version: its warm-up sample, then its scaler, trees and thresholder."""

    warmup: list[Mapping[str, float]] = field(default_factory=list)
    scaler: _Scaler | None = None
    forest: HalfSpaceForest | None = None
    quantile: stats.Quantile | None = None
    seen: int = 0
    learned: int = 0
    judged: int = 0
    flagged: int = 0


@dataclass
class _Run:
    """One model version's events in a batch, in order, with their positions in the batch."""

    state: _ModelState
    positions: list[int] = field(default_factory=list)
    events: list[PredictionEvent] = field(default_factory=list)
    #: The events' feature table by names, shared with other detectors (a ``Batch``'s), if there is one.
    table_of: Callable[[tuple[str, ...]], Rows] | None = None
    #: The events' feature maps, shared with other detectors (a ``Batch``'s), if there is one.
    maps: list[Mapping[str, float]] | None = None


@dataclass
class _PrincipalState:
    """A principal's window: one-minute buckets and their running totals."""

    buckets: deque[list[int]] = field(default_factory=deque)  # [minute, events, anomalies, first anomaly ts]
    events: int = 0
    anomalies: int = 0
    reported: bool = False

    def add(self, ts: int, anomalous: bool, window_minutes: int) -> None:
        """Counts an event in its minute and drops the minutes that left the window."""
        minute = ts // MINUTE_MS
        buckets = self.buckets
        if not buckets or buckets[-1][0] != minute:
            buckets.append([minute, 0, 0, ts])
        bucket = buckets[-1]
        bucket[1] += 1
        self.events += 1
        if anomalous:
            if not bucket[2]:
                bucket[3] = ts
            bucket[2] += 1
            self.anomalies += 1
        first_minute = minute - window_minutes + 1
        while buckets and buckets[0][0] < first_minute:
            _, events, anomalies, _ = buckets.popleft()
            self.events -= events
            self.anomalies -= anomalies

    def first_anomaly(self) -> int:
        """When the window's anomalies started (the latest minute's start if it holds none)."""
        return min((bucket[3] for bucket in self.buckets if bucket[2]), default=self.buckets[-1][3])


@register("input_anomaly")
class InputAnomalyDetector:
    """Finds a principal whose inputs to a model are persistently anomalous.

    Example: 20 services call ``churn:v1`` twice a second; from event 6000 ``svc-7`` sends
    far-out feature vectors. It becomes one finding a few of its events later.

    >>> from detectors._testing import anomaly_stream
    >>> events = anomaly_stream(seed=4, n=12_000, odd_principal="svc-7", odd_from=6_000)
    >>> detector = InputAnomalyDetector()
    >>> [(i, f.principal) for i, e in enumerate(events) if (f := detector.update(e))]
    [(6178, 'svc-7')]
    """

    name: ClassVar[str] = "input_anomaly"
    event_types: ClassVar[tuple[type, ...]] = (PredictionEvent,)
    kind: ClassVar[str] = "input_anomaly"

    def __init__(
        self,
        q: float = 0.99,
        warmup: int = 256,
        calibration: int = 1_000,
        learn_every: int = 4,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        window_ms: int = 600_000,
        min_anomalies: int = 10,
        min_rate: float = 0.2,
        rate_factor: float = 10.0,
        min_z: float = 6.0,
        max_features: int = 64,
        max_principals: int = 100_000,
        max_keys: int = 1_000,
        seed: int = 42,
    ) -> None:
        self.q = q
        self.warmup = warmup
        self.calibration = calibration
        self.learn_every = learn_every
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.window_ms = window_ms
        self.min_anomalies = min_anomalies
        self.min_rate = min_rate
        self.rate_factor = rate_factor
        self.min_z = min_z
        self.max_features = max_features
        self.max_principals = max_principals
        self.max_keys = max_keys
        self.seed = seed
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[ModelKey, _ModelState] = OrderedDict()
        self._principals: OrderedDict[str, _PrincipalState] = OrderedDict()
        self._judged = 0
        self._flagged = 0

    @property
    def n_tracked_keys(self) -> int:
        """Model versions holding learned state (never above ``max_keys``)."""
        return len(self._states)

    @property
    def n_tracked_principals(self) -> int:
        """Principals with a live window (never above ``max_principals``)."""
        return len(self._principals)

    def clone(self) -> "InputAnomalyDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        found = self.update_many((event,))
        return found[0][1] if found else None

    def update_many(self, events: Sequence[Event]) -> list[Positioned]:
        """The findings ``update`` would give event by event."""
        return self.update_batch(Batch(events))

    def update_batch(self, batch: Batch) -> list[Positioned]:
        """``update_many`` over a batch shared with other detectors (its predictions grouped by version once).

        Each model version's trees and thresholder are its own, so a version's events are
        judged together (one numpy pass over its trees); the verdicts then go, in event order,
        through what versions share: the base rate and the principals' windows.
        """
        verdicts = [verdict for run in self._runs_of(batch) for verdict in self._judge_run(run)]
        verdicts.sort(key=itemgetter(0))  # back into event order
        return self._aggregate(verdicts)

    def _runs_of(self, batch: Batch) -> list[_Run]:
        """Each model version's events in the batch, as ``_runs`` finds them; from the shared grouping
        when no version can be evicted meanwhile (the table then ends in per-event order)."""
        if len(batch.events) == 1:  # ``update``: grouping one event only costs
            return self._runs(batch.events)
        by_version = batch.predictions_with_features()
        if not fits_without_eviction(self._states, by_version, self.max_keys):
            return self._runs(batch.events)
        runs = [_Run(lru_get(self._states, key, self.max_keys, _ModelState), positions, events,
                     partial(batch.feature_table, key), batch.feature_maps(key))
                for key, (positions, events) in by_version.items()]
        touch_in_order(self._states, {key: positions[-1] for key, (positions, _) in by_version.items()})
        return runs

    def _runs(self, events: Sequence[Event]) -> list[_Run]:
        """Each model version's events in the batch, its state looked up in event order.

        A version evicted and seen again within the batch starts afresh in a run of its own,
        as it would event by event.
        """
        runs: dict[int, _Run] = {}  # by id of the state: each run holds its state, so no id is reused meanwhile
        states, max_keys = self._states, self.max_keys
        last_key: ModelKey | None = None
        run: _Run | None = None
        for position, event in enumerate(events):
            if not isinstance(event, PredictionEvent) or not event.features:  # feedback carries no features
                continue
            key = (event.model_id, event.model_version)
            if key != last_key or run is None:
                state = lru_get(states, key, max_keys, _ModelState)
                run = runs.get(id(state))
                if run is None:
                    run = runs[id(state)] = _Run(state)
                last_key = key
            run.positions.append(position)
            run.events.append(event)
        return list(runs.values())

    def _judge_run(self, run: _Run) -> list[Verdict]:
        """Warms the version up on the run's first events if needed, then judges the rest."""
        state, start = run.state, 0
        while state.forest is None and start < len(run.events):
            self._warm_up(state, run.events[start].features)
            start += 1
        if state.scaler is None or state.forest is None or start == len(run.events):
            return []
        events = run.events[start:] if start else run.events
        table_of = None if start else run.table_of  # the shared table has a row for every event of the run
        maps = run.maps if not start and run.maps is not None else [event.features for event in events]
        leaves = state.forest.leaves(state.scaler.rows(maps, table_of))
        return self._judge(state, state.forest, leaves, run.positions[start:], events)

    def _judge(self, state: _ModelState, forest: HalfSpaceForest, leaves: Leaves, positions: list[int],
               events: list[PredictionEvent]) -> list[Verdict]:
        """Calibrates, then judges against the quantile and learns the normal events, in order.

        Scores only change when the trees' window swaps, so a batch is scored at once and
        re-scored after each swap; what is learned meanwhile is added to the trees at the swap.
        """
        assert state.quantile is not None
        threshold_now, learn_score = _quantile_methods(state.quantile)
        calibration, learn_every = self.calibration, self.learn_every
        calibrated_from = calibration // 2  # the trees' first window scores 0: calibrate on the second half
        scores: list[float] = forest.scores(leaves).tolist()
        seen, flagged, learned, room = state.seen, 0, 0, forest.room
        to_learn: list[int] = []
        verdicts: list[Verdict] = []
        compiled = (judge_kernel is not None and len(positions) >= COMPILED_FROM and learn_every > 0
                    and int64_safe(calibration, learn_every, room, state.seen))
        judge_rows = judge_kernel.judge if compiled else self._py_judge_rows
        row = 0
        while row < len(positions):
            row, seen, flagged, learned = judge_rows(scores, positions, events, row, seen, flagged, learned, calibration,
                                                     calibrated_from, learn_every, room, threshold_now, learn_score,
                                                     verdicts, to_learn)
            if len(to_learn) == room:  # the trees' window is full: learn it, then score the rest anew
                forest.learn(leaves[to_learn])
                to_learn, room = [], forest.room
                scores[row:] = forest.scores(leaves[row:]).tolist()
        forest.learn(leaves[to_learn])
        state.seen, state.learned = seen, state.learned + learned
        state.judged, state.flagged = state.judged + len(verdicts), state.flagged + flagged
        return verdicts

    @staticmethod
    def _py_judge_rows(scores: list[float], positions: list[int], events: list[PredictionEvent], row: int, seen: int,
                       flagged: int, learned: int, calibration: int, calibrated_from: int, learn_every: int, room: int,
                       threshold_now: Callable[[], float | None], learn_score: Callable[[float], None],
                       verdicts: list[Verdict], to_learn: list[int]) -> tuple[int, int, int, int]:
        """``_judge``'s rows from ``row`` on, until one fills the trees' window (``room`` rows to learn):
        (the next row, seen, flagged, learned). The reference of ``judge`` in ``detectors/_input_anomaly.c``."""
        for row in range(row, len(positions)):
            seen += 1
            score = scores[row]
            if seen > calibration:
                threshold = threshold_now() or 0.0
                anomalous = score > threshold
                learn_score(threshold if threshold < score else score)  # capped: odd inputs cannot raise the bar
                verdicts.append((positions[row], anomalous, events[row]))
                if anomalous:
                    flagged += 1
                    continue  # anomalous traffic is not learned as normal
                if seen % learn_every:
                    continue
            if seen > calibrated_from:  # a learned event's score also calibrates the quantile
                learn_score(score)
            to_learn.append(row)
            learned += 1
            if len(to_learn) == room:
                return row + 1, seen, flagged, learned
        return len(positions), seen, flagged, learned

    def _warm_up(self, state: _ModelState, features: Mapping[str, float]) -> None:
        state.warmup.append(dict(features))
        if len(state.warmup) < self.warmup:
            return
        names = sorted({name for row in state.warmup for name in row})[: self.max_features]
        limits = {name: _robust_limits([row[name] for row in state.warmup if name in row]) for name in names}
        state.warmup = []
        state.scaler = _Scaler.from_limits(limits)
        state.forest = HalfSpaceForest(names, self.n_trees, self.height, self.window_size, self.seed)
        state.quantile = stats.Quantile(self.q)

    def _aggregate(self, verdicts: list[Verdict]) -> list[Positioned]:
        """Counts every judged event into the base rate and its principal's window, in event order.

        Compiled (``aggregate`` in ``detectors/_input_anomaly.c``); from a verdict whose time is not
        a 64-bit int on, ``_py_aggregate``, its reference.
        """
        window_minutes = self.window_ms // MINUTE_MS
        if (judge_kernel is None or len(verdicts) < COMPILED_FROM
                or not int64_safe(window_minutes, self.min_anomalies, self._judged, self._flagged)):
            return self._py_aggregate(verdicts)
        principals, max_principals = self._principals, self.max_principals
        stop, found, judged, flagged = judge_kernel.aggregate(
            self, verdicts, 0, PredictionEvent, window_minutes, MINUTE_MS, self.min_anomalies,
            lambda name: lru_get(principals, name, max_principals, _PrincipalState))
        return found if stop == len(verdicts) else self._py_aggregate(verdicts, stop, found, (judged, flagged))

    def _py_aggregate(self, verdicts: list[Verdict], start: int = 0, found: list[Positioned] | None = None,
                      counts: tuple[int, int] | None = None) -> list[Positioned]:
        """``_aggregate`` in Python from ``verdicts[start]`` on, appending to ``found``; ``counts``: the base
        rate's (judged, flagged) so far in this batch, if not those last written to the detector."""
        found = [] if found is None else found
        window_minutes = self.window_ms // MINUTE_MS
        principals, max_principals, min_anomalies = self._principals, self.max_principals, self.min_anomalies
        # the base rate's counts, in locals until a judgement reads them
        judged, flagged = (self._judged, self._flagged) if counts is None else counts
        for position, anomalous, event in verdicts[start:] if start else verdicts:
            judged += 1
            if anomalous:
                flagged += 1
            name = event.principal
            if name is None:
                continue
            principal = principals.get(name)  # lru_get and _PrincipalState.add, inlined for the common case
            if principal is None:
                principal = lru_get(principals, name, max_principals, _PrincipalState)
            else:
                principals.move_to_end(name)
            buckets, minute = principal.buckets, event.ts // MINUTE_MS
            if not anomalous and buckets and buckets[-1][0] == minute and buckets[0][0] > minute - window_minutes:
                buckets[-1][1] += 1  # a normal event in the current minute, no minute leaving the window
                principal.events += 1
            else:
                principal.add(event.ts, anomalous, window_minutes)
            if principal.anomalies < min_anomalies and not principal.reported:
                continue  # too few anomalies to alarm, and nothing to re-arm
            self._judged, self._flagged = judged, flagged
            finding = self._judge_principal(event, principal)
            if finding is not None:
                found.append((position, finding))
        self._judged, self._flagged = judged, flagged
        return found

    def _judge_principal(self, event: PredictionEvent, principal: _PrincipalState) -> Finding | None:
        """A finding when the principal's window turns alarming; re-arms it once the window calms down."""
        events, anomalies = principal.events, principal.anomalies
        base_rate = max(self._flagged / max(self._judged, 1), 1 - self.q)
        needed = max(self.min_rate, self.rate_factor * base_rate)
        if principal.reported:
            principal.reported = anomalies / events >= needed / 2
            return None
        z = (anomalies - events * base_rate) / math.sqrt(max(events * base_rate * (1 - base_rate), 1e-12))
        if not (anomalies / events >= needed and z >= self.min_z):
            return None
        principal.reported = True
        return self._finding(event, events, anomalies, principal.first_anomaly(), base_rate, z)

    def _finding(self, event: PredictionEvent, events: int, anomalies: int, first: int, base_rate: float,
                 z: float) -> Finding:
        rate = anomalies / events
        evidence = {
            "anomalous_events": str(anomalies),
            "events_in_window": str(events),
            "anomalous_rate": f"{rate:.4f}",
            "base_rate": f"{base_rate:.4f}",
            "rate_ratio": f"{rate / base_rate:.1f}",
            "z_score": f"{z:.2f}",
            "window_minutes": str(self.window_ms // MINUTE_MS),
            "threshold_quantile": f"{self.q:g}",
            "affected_predictions": str(events),
            "first_anomalous_event": iso_utc(first),
        }
        return Finding(
            kind=self.kind, detector=self.name, ts=event.ts, window_start=min(first, event.ts), window_end=event.ts,
            score=z, threshold=self.min_z, strength=min(1.0, rate),
            summary=_summary(event, anomalies, events, rate, base_rate, first, self.window_ms // MINUTE_MS),
            model_id=event.model_id, model_version=event.model_version, principal=event.principal,
            evidence=evidence,
            recommended_actions=(
                f"Rate-limit or hold requests from {event.principal} to {event.model_id} pending review",
                f"Review the {events} predictions served to {event.principal} since {iso_utc(first)}",
                "Check whether the inputs are probing (evasion, extraction) or a broken client integration",
            ),
        )


def _quantile_methods(quantile: stats.Quantile) -> tuple[Callable[[], float | None], Callable[[float], None]]:
    """``quantile``'s ``get`` and ``update``; once it has learned, those of the compiled quantile it wraps.

    River's ``Quantile`` is a Python wrapper whose only work, once updated, is to call its
    compiled P² estimator; calling that directly saves two Python calls per judged event. Before
    its first update the wrapper answers ``get`` (the estimator has nothing to answer with).
    """
    compiled = getattr(quantile, "_quantile", None)
    if compiled is None or not getattr(quantile, "_is_updated", False):
        return quantile.get, quantile.update
    return compiled.get, compiled.update


def _robust_limits(values: list[float]) -> tuple[float, float]:
    finite = sorted(value for value in values if math.isfinite(value))
    if not finite:
        return 0.0, 1.0
    low, high = finite[int(0.01 * (len(finite) - 1))], finite[int(0.99 * (len(finite) - 1))]
    margin = max(high - low, 1e-9) * 0.1
    return low - margin, high + margin


def _summary(event: PredictionEvent, anomalies: int, events: int, rate: float, base_rate: float, first: int,
             minutes: int) -> str:
    return (
        f"Principal {event.principal} sent unusual inputs to model {event.model_id} version {event.model_version}: "
        f"{anomalies} of its {events} requests in the last {minutes} minutes ({rate:.1%}) were outliers against "
        f"{base_rate:.2%} for all traffic ({rate / base_rate:.0f}x), starting about {iso_utc(first)}. "
        f"The {events} predictions served to it since then may be manipulated or wrong; "
        f"rate-limit the source and review its requests."
    )
