"""Download bursts: a principal pulls far more artifacts (or bytes) in a minute than usual.

Successful downloads are counted in event-time tumbling buckets per principal. Each
principal's closed buckets, including a bounded run of the empty ones between active
buckets, feed River exponentially weighted mean/variance; a principal with little
history is judged against the peer baseline (all principals' active buckets). The open
bucket is checked on every event, so a burst is caught mid-minute. Burst buckets are not
learned as normal, and one burst gives one finding.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar

from river import stats

from detectors.base import register
from detectors.events import AccessEvent, Event
from detectors.findings import Finding


class EWBaseline:
    """EW mean and variance of one per-bucket quantity (River stats)."""

    def __init__(self, fading_factor: float) -> None:
        self.mean = stats.EWMean(fading_factor)
        self.var = stats.EWVar(fading_factor)
        self.n = 0

    def update(self, value: float) -> None:
        self.mean.update(value)
        self.var.update(value)
        self.n += 1

    def limit(self, k: float, floor: float) -> float:
        """The value above which a bucket is a burst: ``max(floor, mean + k * std)``."""
        return max(floor, self.mean.get() + k * self.std)

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var.get(), 0.0))


@dataclass
class _Bucket:
    """The open bucket of one principal."""

    index: int
    first_ts: int
    count: int = 0
    bytes: int = 0
    resources: set[str] = field(default_factory=set)


@dataclass
class _PrincipalState:
    counts: EWBaseline
    sizes: EWBaseline
    bucket: _Bucket | None = None
    in_burst: bool = False


@dataclass(frozen=True)
class _Verdict:
    """Why the open bucket is a burst, and against which baseline."""

    count_limit: float
    bytes_limit: float
    baseline: str
    counts: EWBaseline
    sizes: EWBaseline


@register("download_burst")
class DownloadBurstDetector:
    """Finds a principal downloading many more artifacts or bytes per bucket than usual.

    Example: 30 principals download 0-3 artifacts a minute; at minute 40 ``u3`` pulls 200
    artifacts over 2 minutes and is caught at its 21st download, 12 seconds into the burst.

    >>> from detectors._testing import download_stream
    >>> events = download_stream(seed=3, n_principals=30, minutes=60, burst=("u3", 40, 200, 2))
    >>> detector = DownloadBurstDetector()
    >>> found = [(i, f.kind, f.principal) for i, e in enumerate(events) if (f := detector.update(e))]
    >>> found
    [(264, 'download_burst', 'u3')]
    """

    name: ClassVar[str] = "download_burst"
    event_types: ClassVar[tuple[type, ...]] = (AccessEvent,)
    kind: ClassVar[str] = "download_burst"

    def __init__(
        self,
        bucket_ms: int = 60_000,
        min_count: int = 20,
        min_bytes: int = 20 * 2**30,
        k: float = 6.0,
        fading_factor: float = 0.05,
        min_history: int = 30,
        max_gap_buckets: int = 60,
        max_resources: int = 1_000,
        max_keys: int = 100_000,
    ) -> None:
        self.bucket_ms = bucket_ms
        self.min_count = min_count
        self.min_bytes = min_bytes
        self.k = k
        self.fading_factor = fading_factor
        self.min_history = min_history
        self.max_gap_buckets = max_gap_buckets
        self.max_resources = max_resources
        self.max_keys = max_keys
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[str, _PrincipalState] = OrderedDict()
        self._peer_counts = EWBaseline(self.fading_factor)
        self._peer_sizes = EWBaseline(self.fading_factor)

    @property
    def n_tracked_keys(self) -> int:
        """How many principals currently hold learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "DownloadBurstDetector":
        return DownloadBurstDetector(
            self.bucket_ms, self.min_count, self.min_bytes, self.k, self.fading_factor,
            self.min_history, self.max_gap_buckets, self.max_resources, self.max_keys,
        )

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, AccessEvent) or event.action != "download" or event.outcome != "success":
            return None
        state = self._state_for(event.principal)
        bucket = self._bucket_for(state, event)
        bucket.count += max(event.count, 0)
        bucket.bytes += max(event.bytes, 0)
        if len(bucket.resources) < self.max_resources:
            bucket.resources.add(event.resource)
        if state.in_burst:
            return None
        verdict = self._verdict(state, bucket)
        if verdict is None:
            return None
        state.in_burst = True
        return self._finding(event, bucket, verdict)

    def _state_for(self, principal: str) -> _PrincipalState:
        state = self._states.get(principal)
        if state is None:
            state = _PrincipalState(EWBaseline(self.fading_factor), EWBaseline(self.fading_factor))
            self._states[principal] = state
            while len(self._states) > self.max_keys:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(principal)
        return state

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
            state.in_burst = next_index == bucket.index + 1 and self._over(state, bucket)
        else:
            self._learn(state.counts, state.sizes, bucket.count, bucket.bytes)
            self._learn(self._peer_counts, self._peer_sizes, bucket.count, bucket.bytes)
        for _ in range(min(next_index - bucket.index - 1, self.max_gap_buckets)):
            self._learn(state.counts, state.sizes, 0, 0)

    @staticmethod
    def _learn(counts: EWBaseline, sizes: EWBaseline, count: int, size: int) -> None:
        counts.update(float(count))
        sizes.update(float(size))

    def _over(self, state: _PrincipalState, bucket: _Bucket) -> bool:
        # A burst that keeps going into the next bucket is still the same burst.
        counts, sizes = self._baselines(state)[1:]
        return bucket.count > counts.limit(self.k, self.min_count) or bucket.bytes > sizes.limit(self.k, self.min_bytes)

    def _baselines(self, state: _PrincipalState) -> tuple[str, EWBaseline, EWBaseline]:
        if state.counts.n >= self.min_history:
            return "own", state.counts, state.sizes
        return "peers", self._peer_counts, self._peer_sizes

    def _verdict(self, state: _PrincipalState, bucket: _Bucket) -> _Verdict | None:
        baseline, counts, sizes = self._baselines(state)
        count_limit = counts.limit(self.k, self.min_count)
        bytes_limit = sizes.limit(self.k, self.min_bytes)
        if bucket.count <= count_limit and bucket.bytes <= bytes_limit:
            return None
        return _Verdict(count_limit, bytes_limit, baseline, counts, sizes)

    def _finding(self, event: AccessEvent, bucket: _Bucket, verdict: _Verdict) -> Finding:
        ratio = max(bucket.count / max(verdict.count_limit, 1.0), bucket.bytes / max(verdict.bytes_limit, 1.0))
        per_minute = 60_000 / self.bucket_ms
        evidence = {
            "downloads_in_window": str(bucket.count),
            "bytes_in_window": str(bucket.bytes),
            "distinct_resources": str(len(bucket.resources)),
            "window_ms": str(self.bucket_ms),
            "baseline": verdict.baseline,
            "baseline_buckets": str(verdict.counts.n),
            "baseline_mean_per_minute": f"{verdict.counts.mean.get() * per_minute:.3f}",
            "baseline_std_per_minute": f"{verdict.counts.std * per_minute:.3f}",
            "baseline_bytes_mean_per_minute": f"{verdict.sizes.mean.get() * per_minute:.0f}",
            "count_threshold": f"{verdict.count_limit:.1f}",
            "bytes_threshold": f"{verdict.bytes_limit:.0f}",
            "ratio_to_threshold": f"{ratio:.2f}",
        }
        return Finding(
            kind=self.kind,
            detector=self.name,
            ts=event.ts,
            window_start=bucket.first_ts,
            window_end=event.ts,
            score=ratio,
            threshold=1.0,
            strength=min(1.0, 0.5 + 0.1 * ratio),
            summary=self._summary(event, bucket, verdict),
            principal=event.principal,
            evidence=evidence,
            recommended_actions=(
                f"Throttle downloads by {event.principal}",
                f"Force re-authentication of {event.principal} and confirm the activity with its owner",
                "Review which artifacts were downloaded and whether they left the network",
            ),
        )

    def _summary(self, event: AccessEvent, bucket: _Bucket, verdict: _Verdict) -> str:
        seconds = self.bucket_ms // 1000
        return (
            f"Principal {event.principal} downloaded {bucket.count} artifacts ({_gib(bucket.bytes)}) "
            f"from {len(bucket.resources)} distinct resources within a {seconds}s window starting "
            f"{_iso(bucket.first_ts)}; its {verdict.baseline} baseline is {verdict.counts.mean.get():.2f} "
            f"± {verdict.counts.std:.2f} per window, so the limit was {verdict.count_limit:.0f} artifacts "
            f"or {_gib(int(verdict.bytes_limit))}. Throttle the principal and force re-authentication "
            f"while its owner confirms the activity."
        )


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"
