"""Input anomaly: a source (principal) sends a model inputs unlike anything it normally sees.

Per ``(model_id, model_version)`` the first ``warmup`` feature vectors fix the feature set
and robust limits (the 1st-99th percentile, widened by a margin) that scale features into
the unit box River's ``anomaly.HalfSpaceTrees`` expects. The next ``calibration`` events
are learned without judgement. From then on every event is scored; a streaming quantile
(River ``stats.Quantile``) of the scores is the thresholder: an event is anomalous when its
score exceeds the ``q`` quantile. The quantile learns each score capped at the current
threshold, so a flood of odd inputs cannot raise the bar, and anomalous events are never
learned by the trees (anomalous traffic is not learned as normal).

Cost: scoring is ~9 µs and learning ~11 µs per event on this box; learning only every
``learn_every``-th normal event (default 4) keeps an update near 12 µs while the trees'
window still spans ``4 x window_size`` events of recent normal traffic.

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
from typing import ClassVar, Mapping

from river import anomaly, stats

from detectors._regime import iso_utc
from detectors._lru import lru_get
from detectors.base import register
from detectors.events import Event, PredictionEvent
from detectors.findings import Finding

ModelKey = tuple[str, str]
MINUTE_MS = 60_000


@dataclass
class _ModelState:
    """One model version: its warm-up sample, then its trees and thresholder."""

    warmup: list[Mapping[str, float]] = field(default_factory=list)
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    trees: anomaly.HalfSpaceTrees | None = None
    quantile: stats.Quantile | None = None
    seen: int = 0
    learned: int = 0
    judged: int = 0
    flagged: int = 0


@dataclass
class _PrincipalState:
    buckets: deque[list[int]] = field(default_factory=deque)  # [minute, events, anomalies, first anomaly ts]
    reported: bool = False

    def add(self, ts: int, anomalous: bool) -> None:
        minute = ts // MINUTE_MS
        if not self.buckets or self.buckets[-1][0] != minute:
            self.buckets.append([minute, 0, 0, ts])
        bucket = self.buckets[-1]
        bucket[1] += 1
        if anomalous:
            bucket[3] = ts if bucket[2] == 0 else bucket[3]
            bucket[2] += 1

    def roll(self, first_minute: int) -> None:
        while self.buckets and self.buckets[0][0] < first_minute:
            self.buckets.popleft()

    def totals(self) -> tuple[int, int, int]:
        events = sum(bucket[1] for bucket in self.buckets)
        anomalies = sum(bucket[2] for bucket in self.buckets)
        first = min((bucket[3] for bucket in self.buckets if bucket[2]), default=self.buckets[-1][3])
        return events, anomalies, first


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
        return InputAnomalyDetector(
            self.q, self.warmup, self.calibration, self.learn_every, self.n_trees, self.height, self.window_size,
            self.window_ms, self.min_anomalies, self.min_rate, self.rate_factor, self.min_z, self.max_features,
            self.max_principals, self.max_keys, self.seed,
        )

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, PredictionEvent) or event.is_feedback or not event.features:
            return None
        state = self._state_for((event.model_id, event.model_version))
        verdict = self._score(state, event.features)
        if verdict is None or event.principal is None:
            return None
        return self._aggregate(event, verdict)

    def _score(self, state: _ModelState, features: Mapping[str, float]) -> tuple[float, float] | None:
        """``(score, threshold)`` of a judged event; ``None`` while the model version is still learning."""
        if state.trees is None or state.quantile is None:
            self._warm_up(state, features)
            return None
        x = self._scaled(state, features)
        state.seen += 1
        if state.seen <= self.calibration:
            self._learn(state, x)
            return None
        score = float(state.trees.score_one(x))  # type: ignore[no-untyped-call]  # river is untyped here
        threshold = state.quantile.get() or 0.0
        anomalous = score > threshold
        state.quantile.update(min(score, threshold))
        state.judged += 1
        self._judged += 1
        if anomalous:
            state.flagged += 1
            self._flagged += 1
        elif state.seen % self.learn_every == 0:
            self._learn(state, x)
        return score, threshold

    def _learn(self, state: _ModelState, x: dict[str, float]) -> None:
        assert state.trees is not None and state.quantile is not None
        if state.seen > self.calibration // 2:  # the trees' first window scores 0: calibrate on the second half
            state.quantile.update(state.trees.score_one(x))  # type: ignore[no-untyped-call]  # river is untyped here
        state.trees.learn_one(x)  # type: ignore[no-untyped-call]
        state.learned += 1

    def _warm_up(self, state: _ModelState, features: Mapping[str, float]) -> None:
        state.warmup.append(dict(features))
        if len(state.warmup) < self.warmup:
            return
        names = sorted({name for row in state.warmup for name in row})[: self.max_features]
        state.limits = {name: _robust_limits([row[name] for row in state.warmup if name in row]) for name in names}
        state.warmup = []
        state.trees = anomaly.HalfSpaceTrees(
            n_trees=self.n_trees, height=self.height, window_size=self.window_size,
            limits={name: (0.0, 1.0) for name in names}, seed=self.seed,
        )
        state.quantile = stats.Quantile(self.q)

    def _scaled(self, state: _ModelState, features: Mapping[str, float]) -> dict[str, float]:
        scaled = {}
        for name, (low, high) in state.limits.items():
            value = features.get(name, (low + high) / 2)
            value = float(value) if math.isfinite(value) else high
            scaled[name] = min(1.0, max(0.0, (value - low) / (high - low)))
        return scaled

    def _aggregate(self, event: PredictionEvent, verdict: tuple[float, float]) -> Finding | None:
        assert event.principal is not None
        principal = self._principal(event.principal)
        score, threshold = verdict
        principal.add(event.ts, score > threshold)
        principal.roll(event.ts // MINUTE_MS - self.window_ms // MINUTE_MS + 1)
        events, anomalies, first = principal.totals()
        base_rate = max(self._flagged / max(self._judged, 1), 1 - self.q)
        needed = max(self.min_rate, self.rate_factor * base_rate)
        z = (anomalies - events * base_rate) / math.sqrt(max(events * base_rate * (1 - base_rate), 1e-12))
        alarming = anomalies >= self.min_anomalies and anomalies / events >= needed and z >= self.min_z
        if principal.reported:
            principal.reported = anomalies / events >= needed / 2
            return None
        if not alarming:
            return None
        principal.reported = True
        return self._finding(event, events, anomalies, first, base_rate, z)

    def _principal(self, name: str) -> _PrincipalState:
        return lru_get(self._principals, name, self.max_principals, _PrincipalState)

    def _state_for(self, key: ModelKey) -> _ModelState:
        return lru_get(self._states, key, self.max_keys, _ModelState)

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
