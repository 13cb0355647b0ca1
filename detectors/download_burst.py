"""Download bursts: a principal pulls far more artifacts (or bytes) than usual.

Two rules, one finding per burst:

* **per bucket** - successful downloads are counted in event-time tumbling buckets per
  principal. Each principal's closed buckets, including a bounded run of the empty ones
  between active buckets, feed River exponentially weighted mean/variance; a principal
  with little history is judged against the peer baseline (all principals' active
  buckets). The open bucket is checked on every event, so a large burst is caught
  mid-minute; ``min_count`` artifacts (or ``min_bytes``) per bucket is the floor.
* **against the principal's own rate** - a quiet principal (a few downloads a day) that
  pulls a dozen artifacts in five minutes never reaches ``min_count`` in one bucket. Each
  principal's share of active ``rate_slot_ms`` slots (with a download) and its largest
  usual slot (``peak``) are decayed over event time (half-life ``rate_half_life_ms``) and
  learned only as slots leave the sliding window of the last ``rate_window_ms``, so a burst
  is judged before any of it is learned. The window's downloads would need at least
  ``count / peak`` active slots; a Poisson tail test of that many against the principal's active rate
  bounds the p-value (so a principal that habitually downloads in clumps is judged on
  clumps, not single downloads). The p-value must beat ``alpha`` false alarms per day spread
  Bonferroni-style over every tracked principal and every window of a day, and the window
  must hold at least ``min_rate_count`` artifacts. A principal is judged this way once it
  has ``rate_min_history_ms`` of history.

Burst buckets are not learned as normal.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar


from detectors._lru import lru_get
from detectors.base import fresh_copy, register
from detectors.events import AccessEvent, Event
from detectors.findings import Finding


class EWBaseline:
    """EW mean and variance of one per-bucket quantity: River's ``stats.EWMean``/``stats.EWVar``
    arithmetic, bit for bit (a unit test compares them), in three floats.

    A River stat is a Python object, its ``__dict__`` and a Rust object; a principal holds two
    baselines of two stats each. Inline, a baseline is about 80 bytes instead of about 1 KB,
    which is what lets a million tracked principals fit.
    """

    __slots__ = ("alpha", "n", "_mean", "_square_mean")

    def __init__(self, fading_factor: float) -> None:
        self.alpha = fading_factor
        self.n = 0
        self._mean = 0.0
        self._square_mean = 0.0

    def update(self, value: float) -> None:
        alpha = self.alpha
        if self.n:
            self._mean = alpha * value + (1 - alpha) * self._mean
            self._square_mean = alpha * (value * value) + (1 - alpha) * self._square_mean
        else:  # River starts from the first value, not from zero
            self._mean, self._square_mean = value, value * value
        self.n += 1

    def limit(self, k: float, floor: float) -> float:
        """The value above which a bucket is a burst: ``max(floor, mean + k * std)``."""
        return max(floor, self._mean + k * self.std)

    @property
    def mean(self) -> float:
        return self._mean

    @property
    def variance(self) -> float:
        return self._square_mean - self._mean * self._mean

    @property
    def std(self) -> float:
        return math.sqrt(max(self.variance, 0.0))


class RateModel:
    """Decayed long-run share of active slots, downloads per slot, and the usual clump size.

    Every slot since the principal was first seen counts, the empty ones too; older slots
    weigh ``decay ** age``. ``peak`` is the largest count of a learned slot, fading with
    the same decay (never below 1).
    """

    __slots__ = ("decay", "slots", "active", "total", "peak", "last_index")

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.slots = 0.0  # decayed number of slots observed
        self.active = 0.0  # decayed number of slots with a download
        self.total = 0.0  # decayed number of downloads
        self.peak = 1.0
        self.last_index: int | None = None

    def update(self, index: int, count: int) -> None:
        """Learn slot ``index`` holding ``count``; the slots skipped since the last one held zero."""
        steps = 1 if self.last_index is None else max(index - self.last_index, 1)
        fade = self.decay ** steps
        self.slots = self.slots * fade + (1.0 - fade) / (1.0 - self.decay)
        self.active = self.active * fade + (count > 0)
        self.total = self.total * fade + count
        self.peak = max(1.0, self.peak * fade, float(count))
        self.last_index = index

    @property
    def active_rate(self) -> float:
        """Share of slots with at least one download."""
        return self.active / self.slots if self.slots else 0.0

    @property
    def rate(self) -> float:
        """Downloads per slot."""
        return self.total / self.slots if self.slots else 0.0


@dataclass(slots=True)
class _Bucket:
    """The open bucket of one principal.

    Its distinct resources are the first one plus a set made only when a second appears: most
    buckets see one resource, and an empty set is 216 bytes on each of a million principals.
    """

    index: int
    first_ts: int
    count: int = 0
    bytes: int = 0
    first_resource: str | None = None
    other_resources: set[str] | None = None

    def add_resource(self, resource: str, cap: int) -> None:
        """Remember ``resource`` while fewer than ``cap`` distinct ones are known."""
        if self.first_resource is None:
            if cap > 0:
                self.first_resource = resource
        elif resource != self.first_resource and self.distinct_resources < cap:
            if self.other_resources is None:
                self.other_resources = set()
            self.other_resources.add(resource)

    @property
    def distinct_resources(self) -> int:
        return (self.first_resource is not None) + len(self.other_resources or ())


@dataclass(slots=True)
class _PrincipalState:
    counts: EWBaseline
    sizes: EWBaseline
    rates: RateModel
    first_ts: int
    # [slot index, downloads, in a burst] in the window: a few entries, so a list (an empty deque is 760 bytes)
    window: list[list[int]] = field(default_factory=list)
    bucket: _Bucket | None = None
    in_burst: bool = False
    rate_alarm_until: int = -1  # a rate burst stays one burst until its window has been quiet this long


@dataclass(frozen=True)
class _RateVerdict:
    """Why the sliding window is a burst for this principal's own rate."""

    count: int
    clumps_needed: float
    expected_clumps: float
    peak: float
    log10_p: float
    log10_threshold: float


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
        rate_window_ms: int = 10 * 60_000,
        rate_slot_ms: int = 60_000,
        min_rate_count: int = 8,
        alpha: float = 0.01,
        rate_half_life_ms: int = 24 * 3_600_000,
        rate_min_history_ms: int = 3_600_000,
        min_rate_per_day: float = 1.0,
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
        self.rate_window_ms = rate_window_ms
        self.rate_slot_ms = rate_slot_ms
        self.min_rate_count = min_rate_count
        self.alpha = alpha
        self.rate_half_life_ms = rate_half_life_ms
        self.rate_min_history_ms = rate_min_history_ms
        self.min_rate_per_day = min_rate_per_day
        self._decay = 0.5 ** (rate_slot_ms / rate_half_life_ms)
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
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, AccessEvent) or event.action != "download" or event.outcome != "success":
            return None
        state = self._state_for(event.principal, event.ts)
        bucket = self._bucket_for(state, event)
        bucket.count += max(event.count, 0)
        bucket.bytes += max(event.bytes, 0)
        bucket.add_resource(event.resource, self.max_resources)
        in_window = self._slide(state, event)
        if state.in_burst:
            return None
        verdict = self._verdict(state, bucket)
        if verdict is not None:
            state.in_burst = True
            self._taint(state, event.ts)
            return self._finding(event, bucket, verdict)
        rate_verdict = self._rate_verdict(state, in_window)
        if rate_verdict is None:
            return None
        first = event.ts >= state.rate_alarm_until  # else the same burst, still going
        self._taint(state, event.ts)
        return self._rate_finding(event, state, bucket, rate_verdict) if first else None

    def _taint(self, state: _PrincipalState, ts: int) -> None:
        """Mark the window as a burst (never learned as normal) and extend the burst."""
        for entry in state.window:
            entry[2] = 1
        state.rate_alarm_until = ts + self.rate_window_ms

    def _slide(self, state: _PrincipalState, event: AccessEvent) -> int:
        """Add the event to the principal's sliding window; the downloads now in it."""
        slot = event.ts // self.rate_slot_ms
        window = state.window
        if window and window[-1][0] >= slot:
            window[-1][1] += max(event.count, 0)  # late events count in the newest slot
        else:
            window.append([slot, max(event.count, 0), int(event.ts < state.rate_alarm_until)])
        oldest = window[-1][0] - self.rate_window_ms // self.rate_slot_ms
        while window[0][0] <= oldest:
            # Slots are learned only once they leave the window, so a burst in progress is not
            # learned before it is judged; a burst's slots are learned as empty.
            index, count, in_burst = window.pop(0)
            state.rates.update(index, 0 if in_burst else count)
        return sum(entry[1] for entry in window)

    def _rate_verdict(self, state: _PrincipalState, count: int) -> _RateVerdict | None:
        if count < self.min_rate_count or state.rates.last_index is None:
            return None
        if state.rates.slots * self.rate_slot_ms < self.rate_min_history_ms:
            return None
        # Under the principal's habits the window holds Poisson(expected) active slots of at most
        # ``peak`` downloads each, so ``count`` downloads need at least count / peak of them.
        floor = self.min_rate_per_day * self.rate_slot_ms / 86_400_000
        expected = max(state.rates.active_rate, floor) * self.rate_window_ms / self.rate_slot_ms
        needed = count / state.rates.peak
        log10_p = poisson_log10_tail(needed, expected)
        tests_per_day = len(self._states) * 86_400_000 / self.rate_window_ms
        log10_threshold = math.log10(self.alpha / tests_per_day)
        if log10_p >= log10_threshold:
            return None
        return _RateVerdict(count, needed, expected, state.rates.peak, log10_p, log10_threshold)

    def _state_for(self, principal: str, ts: int) -> _PrincipalState:
        return lru_get(self._states, principal, self.max_keys, lambda: _PrincipalState(
            EWBaseline(self.fading_factor), EWBaseline(self.fading_factor), RateModel(self._decay), ts))

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
        rate_burst = bucket.first_ts < state.rate_alarm_until
        if state.in_burst:
            state.in_burst = next_index == bucket.index + 1 and self._over(state, bucket)
        elif not rate_burst:
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
            "rule": "per_bucket",
            "downloads_in_window": str(bucket.count),
            "bytes_in_window": str(bucket.bytes),
            "distinct_resources": str(bucket.distinct_resources),
            "window_ms": str(self.bucket_ms),
            "baseline": verdict.baseline,
            "baseline_buckets": str(verdict.counts.n),
            "baseline_mean_per_minute": f"{verdict.counts.mean * per_minute:.3f}",
            "baseline_std_per_minute": f"{verdict.counts.std * per_minute:.3f}",
            "baseline_bytes_mean_per_minute": f"{verdict.sizes.mean * per_minute:.0f}",
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
            f"from {bucket.distinct_resources} distinct resources within a {seconds}s window starting "
            f"{_iso(bucket.first_ts)}; its {verdict.baseline} baseline is {verdict.counts.mean:.2f} "
            f"± {verdict.counts.std:.2f} per window, so the limit was {verdict.count_limit:.0f} artifacts "
            f"or {_gib(int(verdict.bytes_limit))}. Throttle the principal and force re-authentication "
            f"while its owner confirms the activity."
        )


    def _rate_finding(self, event: AccessEvent, state: _PrincipalState, bucket: _Bucket,
                      verdict: _RateVerdict) -> Finding:
        window_start = max(state.window[0][0] * self.rate_slot_ms, event.ts - self.rate_window_ms)
        per_day = state.rates.rate * 86_400_000 / self.rate_slot_ms
        minutes = self.rate_window_ms / 60_000
        expected_downloads = state.rates.rate * self.rate_window_ms / self.rate_slot_ms
        ratio = verdict.count / max(expected_downloads, 1e-9)
        active_per_day = state.rates.active_rate * 86_400_000 / self.rate_slot_ms
        evidence = {
            "rule": "own_rate",
            "downloads_in_window": str(verdict.count),
            "window_ms": str(self.rate_window_ms),
            "distinct_resources_this_bucket": str(bucket.distinct_resources),
            "baseline": "own",
            "baseline_rate_per_day": f"{per_day:.2f}",
            "baseline_history_hours": f"{(event.ts - state.first_ts) / 3_600_000:.1f}",
            "slot_ms": str(self.rate_slot_ms),
            "baseline_active_slots_per_day": f"{active_per_day:.2f}",
            "baseline_peak_per_slot": f"{verdict.peak:.1f}",
            "expected_downloads_in_window": f"{expected_downloads:.4f}",
            "expected_active_slots_in_window": f"{verdict.expected_clumps:.4f}",
            "active_slots_needed": f"{verdict.clumps_needed:.1f}",
            "log10_p_value": f"{verdict.log10_p:.1f}",
            "log10_p_threshold": f"{verdict.log10_threshold:.1f}",
            "principals_tracked": str(len(self._states)),
            "ratio_to_expected": f"{ratio:.1f}",
        }
        summary = (
            f"Principal {event.principal} downloaded {verdict.count} artifacts in the {minutes:.0f} minutes up to "
            f"{_iso(event.ts)}; its own rate over {(event.ts - state.first_ts) / 3_600_000:.1f} h of history is "
            f"{per_day:.1f} a day, at most {verdict.peak:.0f} per {self.rate_slot_ms // 1000}s slot "
            f"({expected_downloads:.2f} expected in such a window), p=1e{verdict.log10_p:.0f} against a budget "
            f"of 1e{verdict.log10_threshold:.0f} "
            f"over {len(self._states)} principals. Throttle the principal and force re-authentication while its "
            f"owner confirms the activity."
        )
        strength = min(1.0, 0.5 + 0.05 * (verdict.log10_threshold - verdict.log10_p))
        return Finding(
            kind=self.kind,
            detector=self.name,
            ts=event.ts,
            window_start=window_start,
            window_end=event.ts,
            score=-verdict.log10_p,
            threshold=-verdict.log10_threshold,
            strength=strength,
            summary=summary,
            principal=event.principal,
            evidence=evidence,
            recommended_actions=(
                f"Throttle downloads by {event.principal}",
                f"Force re-authentication of {event.principal} and confirm the activity with its owner",
                "Review which artifacts were downloaded and whether they left the network",
            ),
        )


def poisson_log10_tail(count: float, mean: float) -> float:
    """log10 P(X >= count) for X ~ Poisson(mean), continuous in ``count`` (regularized lower gamma).

    >>> round(10 ** poisson_log10_tail(2, 1.0), 6)  # 1 - e^-1 - e^-1
    0.264241
    >>> poisson_log10_tail(12, 0.3) < -9
    True
    """
    if count <= 0 or mean <= 0:
        return 0.0 if count <= 0 else -math.inf
    if mean >= count:
        return 0.0  # not in the upper tail: nothing to report
    # P(a, x) = x^a e^-x / Gamma(a + 1) * sum_n x^n / ((a + 1) ... (a + n)), converging fast for x < a.
    term = total = 1.0
    for step in range(1, 1_000):
        term *= mean / (count + step)
        total += term
        if term < total * 1e-15:
            break
    log_p = count * math.log(mean) - mean - math.lgamma(count + 1.0) + math.log(total)
    return min(0.0, log_p / math.log(10))


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"
