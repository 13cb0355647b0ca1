"""Query bursts: a principal sends far more queries per minute than it usually does at that hour.

Queries (``AccessEvent`` with ``action="query"``, any outcome) are summed by ``count`` in
event-time tumbling buckets per principal. Two baselines judge the open bucket:

* the principal's recent level: River EW mean/variance over its closed, active buckets.
  Services follow a slow daily rhythm (e.g. 120 +/- 50% a minute over 24 h); a fading
  factor of 0.05 (about 20 buckets of memory) follows that rhythm with a lag of a few
  queries, far below the noise;
* the principal's own hour-of-day baseline (24 EW slots, created lazily), which knows
  that a morning ramp-up after a quiet night is normal.

A bucket is a burst only when it is above every baseline that has enough history, and at
least ``min_ratio`` times the recent mean and ``min_count`` queries. A principal with
little history is judged against its peers (all principals' buckets, slower fading).
Idle gaps are not learned as zeros: the baseline is the rate while active, so an
intermittent batch job resuming is not a burst. Burst buckets are not learned; one burst
(buckets over the limit, with gaps of at most ``max_gap_buckets``) gives one finding.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar

from detectors._lru import lru_get
from detectors.base import fresh_copy, register
from detectors.download_burst import EWBaseline
from detectors.events import AccessEvent, Event
from detectors.findings import Finding

HOUR_MS = 3_600_000


@dataclass(slots=True)
class _Bucket:
    index: int
    first_ts: int
    queries: int = 0
    events: int = 0
    resources: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _PrincipalState:
    level: EWBaseline
    hours: dict[int, EWBaseline] = field(default_factory=dict)
    bucket: _Bucket | None = None
    in_burst: bool = False


@dataclass(frozen=True)
class _Verdict:
    limit: float
    baseline: str
    reference: EWBaseline
    hour_reference: EWBaseline | None


@register("query_burst")
class QueryBurstDetector:
    """Finds a principal querying far above its own (hour-of-day aware) baseline or its peers'.

    Example: 20 services report their per-minute query counts (about 120 a minute with a
    daily rhythm of +/-50%) for six hours; from minute 330 ``u3`` sends 2,000 a minute for
    ten minutes at 05:30 and is caught on its first burst report, once, against its own
    level and its 05:00-06:00 baseline.

    >>> from detectors._testing import query_stream
    >>> events = query_stream(seed=3, n_principals=20, minutes=360, burst=("u3", 330, 2_000, 10))
    >>> detector = QueryBurstDetector()
    >>> [(i, f.kind, f.principal, f.evidence["baseline"]) for i, e in enumerate(events)
    ...  if (f := detector.update(e))]
    [(5795, 'query_burst', 'u3', 'own+hour')]
    """

    name: ClassVar[str] = "query_burst"
    event_types: ClassVar[tuple[type, ...]] = (AccessEvent,)
    kind: ClassVar[str] = "query_burst"

    def __init__(
        self,
        bucket_ms: int = 60_000,
        k: float = 6.0,
        min_ratio: float = 2.0,
        min_count: int = 50,
        fading_factor: float = 0.05,
        peer_fading_factor: float = 0.01,
        min_history: int = 30,
        min_hour_history: int = 20,
        max_gap_buckets: int = 5,
        max_resources: int = 100,
        max_keys: int = 100_000,
        peer_min_ratio: float = 4.0,
    ) -> None:
        self.bucket_ms = bucket_ms
        self.k = k
        self.min_ratio = min_ratio
        self.min_count = min_count
        self.fading_factor = fading_factor
        self.peer_fading_factor = peer_fading_factor
        self.min_history = min_history
        self.min_hour_history = min_hour_history
        self.max_gap_buckets = max_gap_buckets
        self.max_resources = max_resources
        self.max_keys = max_keys
        # Peers are a coarse yardstick (their rates and reporting rhythms differ; a gateway record
        # straddling a window doubles a count), so a new principal must be far above them.
        self.peer_min_ratio = peer_min_ratio
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[str, _PrincipalState] = OrderedDict()
        self._peers = EWBaseline(self.peer_fading_factor)

    @property
    def n_tracked_keys(self) -> int:
        """How many principals currently hold learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "QueryBurstDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, AccessEvent) or event.action != "query":
            return None
        state = self._state_for(event.principal)
        bucket = self._bucket_for(state, event)
        bucket.queries += max(event.count, 0)
        bucket.events += 1
        if event.resource in bucket.resources or len(bucket.resources) < self.max_resources:
            bucket.resources[event.resource] = bucket.resources.get(event.resource, 0) + max(event.count, 0)
        if state.in_burst:
            return None
        verdict = self._verdict(state, bucket)
        if verdict is None or bucket.queries <= verdict.limit:
            return None
        state.in_burst = True
        return self._finding(event, bucket, verdict)

    def _state_for(self, principal: str) -> _PrincipalState:
        return lru_get(self._states, principal, self.max_keys, lambda: _PrincipalState(EWBaseline(self.fading_factor)))

    def _bucket_for(self, state: _PrincipalState, event: AccessEvent) -> _Bucket:
        index = event.ts // self.bucket_ms
        bucket = state.bucket
        if bucket is not None and index <= bucket.index:
            return bucket  # late events count in the open bucket: buckets only move forward
        if bucket is not None:
            self._close(state, bucket, index)
        state.bucket = _Bucket(index, event.ts)
        return state.bucket

    def _close(self, state: _PrincipalState, bucket: _Bucket, next_index: int) -> None:
        if state.in_burst:
            # A burst that runs on into the next bucket is still the same burst.
            verdict = self._verdict(state, bucket)
            over = verdict is None or bucket.queries > verdict.limit
            state.in_burst = over and next_index - bucket.index <= self.max_gap_buckets
            return
        value = float(bucket.queries)
        state.level.update(value)
        hour = self._hour(bucket.first_ts)
        state.hours.setdefault(hour, EWBaseline(self.fading_factor)).update(value)
        self._peers.update(value)

    def _hour(self, ts: int) -> int:
        return (ts // HOUR_MS) % 24

    def _verdict(self, state: _PrincipalState, bucket: _Bucket) -> _Verdict | None:
        if state.level.n >= self.min_history:
            limit = self._limit(state.level)
            hour_baseline = state.hours.get(self._hour(bucket.first_ts))
            if hour_baseline is None or hour_baseline.n < self.min_hour_history:
                return _Verdict(limit, "own", state.level, None)
            return _Verdict(max(limit, self._limit(hour_baseline)), "own+hour", state.level, hour_baseline)
        if self._peers.n >= self.min_history:
            return _Verdict(self._limit(self._peers, self.peer_min_ratio), "peers", self._peers, None)
        return None  # nobody has history yet: nothing to compare with

    def _limit(self, baseline: EWBaseline, min_ratio: float | None = None) -> float:
        ratio = self.min_ratio if min_ratio is None else min_ratio
        return max(baseline.limit(self.k, self.min_count), ratio * baseline.mean)

    def _finding(self, event: AccessEvent, bucket: _Bucket, verdict: _Verdict) -> Finding:
        ratio = bucket.queries / max(verdict.limit, 1.0)
        mean = verdict.reference.mean
        effect = (bucket.queries - mean) / max(verdict.reference.std, 1.0)
        evidence = {
            "queries_in_window": str(bucket.queries),
            "reports_in_window": str(bucket.events),
            "window_ms": str(self.bucket_ms),
            "top_resources": _top(bucket.resources),
            "baseline": verdict.baseline,
            "baseline_buckets": str(verdict.reference.n),
            "baseline_mean": f"{mean:.2f}",
            "baseline_std": f"{verdict.reference.std:.2f}",
            "hour_of_day_utc": str(self._hour(bucket.first_ts)),
            "threshold": f"{verdict.limit:.1f}",
            "ratio_to_threshold": f"{ratio:.2f}",
            "ratio_to_baseline_mean": f"{bucket.queries / max(mean, 1.0):.2f}",
            "z_score": f"{effect:.1f}",
        }
        if verdict.hour_reference is not None:
            evidence["hour_baseline_mean"] = f"{verdict.hour_reference.mean:.2f}"
            evidence["hour_baseline_buckets"] = str(verdict.hour_reference.n)
        return Finding(
            kind=self.kind,
            detector=self.name,
            ts=event.ts,
            window_start=bucket.first_ts,
            window_end=event.ts,
            score=ratio,
            threshold=1.0,
            strength=min(1.0, 0.4 + 0.1 * ratio),
            summary=self._summary(event, bucket, verdict, effect),
            principal=event.principal,
            evidence=evidence,
            recommended_actions=(
                f"Rate-limit queries by {event.principal} on {_top(bucket.resources, 3)}",
                f"Confirm the traffic with the owner of {event.principal}; rotate its credentials if unknown",
                "Check its prediction traffic for extraction signatures (boundary probing, feature sweeps)",
            ),
        )

    def _summary(self, event: AccessEvent, bucket: _Bucket, verdict: _Verdict, effect: float) -> str:
        hour = ""
        if verdict.hour_reference is not None:
            hour = f" and {verdict.hour_reference.mean:.0f} at this hour of day"
        return (
            f"Principal {event.principal} sent {bucket.queries} queries to {_top(bucket.resources, 3)} in the "
            f"{self.bucket_ms // 1000}s window starting {_iso(bucket.first_ts)}; its {verdict.baseline} baseline "
            f"is {verdict.reference.mean:.0f} +/- {verdict.reference.std:.0f} per window over "
            f"{verdict.reference.n} windows{hour}, so the limit was {verdict.limit:.0f} ({effect:.0f} standard "
            f"deviations above normal). A model behind these endpoints may be being extracted or scraped. "
            f"Rate-limit the principal and confirm the traffic with its owner."
        )


def _top(resources: dict[str, int], limit: int = 5) -> str:
    ranked = sorted(resources, key=lambda name: (-resources[name], name))[:limit]
    return ",".join(ranked) or "(none)"


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
