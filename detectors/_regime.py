"""Shared bookkeeping for the prediction-side detectors: running moments, change dating, time text.

A drift detector (River ADWIN) says *that* a stream changed; ``RecentBlocks`` keeps the
last few hundred values in small blocks so a detector can say *since when* and compare the
new regime with what came before, with bounded memory per key.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from river import drift


@dataclass
class Moments:
    """Count, mean and sum of squared deviations (Welford); a suffix can be subtracted."""

    n: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def minus(self, part: "Moments") -> "Moments":
        """The moments of the values in ``self`` that are not in ``part``."""
        rest_n = self.n - part.n
        if rest_n <= 0:
            return Moments()
        rest_mean = (self.mean * self.n - part.mean * part.n) / rest_n
        gap = part.mean - rest_mean
        rest_m2 = self.m2 - part.m2 - gap * gap * rest_n * part.n / self.n
        return Moments(rest_n, rest_mean, max(rest_m2, 0.0))

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


@dataclass
class Regime:
    """The most recent regime of a stream: when it began, its moments and (optionally) its histogram."""

    start_ts: int
    moments: Moments
    bins: list[int]


@dataclass
class RecentBlocks:
    """The last ``max_blocks`` blocks of ``block_size`` values: ``[first_ts, n, sum, sumsq, *bin_counts]``."""

    block_size: int = 16
    max_blocks: int = 64
    n_bins: int = 0
    _blocks: deque[list[float]] = field(default_factory=deque)

    def add(self, ts: int, value: float, bin_index: int = -1) -> None:
        if not self._blocks or self._blocks[-1][1] >= self.block_size:
            self._blocks.append([float(ts), 0.0, 0.0, 0.0] + [0.0] * self.n_bins)
            if len(self._blocks) > self.max_blocks:
                self._blocks.popleft()
        block = self._blocks[-1]
        block[1] += 1
        block[2] += value
        block[3] += value * value
        if bin_index >= 0:
            block[4 + bin_index] += 1

    def recent_regime(self) -> Regime:
        """The suffix of blocks whose mean differs most (in z terms) from the blocks before it."""
        blocks = list(self._blocks)
        total_n = sum(block[1] for block in blocks)
        total_sum = sum(block[2] for block in blocks)
        best, best_split, head_n, head_sum = -1.0, max(len(blocks) - 1, 0), 0.0, 0.0
        for split in range(1, len(blocks)):
            head_n += blocks[split - 1][1]
            head_sum += blocks[split - 1][2]
            tail_n = total_n - head_n
            gap = abs((total_sum - head_sum) / tail_n - head_sum / head_n)
            score = gap * math.sqrt(head_n * tail_n / total_n)
            if score > best:
                best, best_split = score, split
        return _regime_of(blocks[best_split:], self.n_bins)

    def clear(self) -> None:
        self._blocks.clear()


def _regime_of(blocks: list[list[float]], n_bins: int) -> Regime:
    n = sum(block[1] for block in blocks)
    mean = sum(block[2] for block in blocks) / n
    squares = sum(block[3] for block in blocks)
    bins = [int(sum(block[4 + index] for block in blocks)) for index in range(n_bins)]
    return Regime(int(blocks[0][0]), Moments(n, mean, max(squares - n * mean * mean, 0.0)), bins)


def adwin(delta: float) -> drift.ADWIN:
    return drift.ADWIN(delta=delta)  # type: ignore[no-untyped-call]  # river is untyped here


def iso_utc(ts_ms: int) -> str:
    """Event time (epoch ms) as ISO-8601 UTC text, e.g. ``2026-01-01T00:16:32+00:00``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def normal_sf(z: float) -> float:
    """One-sided upper tail of the standard normal (no scipy)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_proportion_z(errors_a: float, n_a: float, errors_b: float, n_b: float) -> float:
    """z statistic for "rate a is above rate b" (pooled variance); 0 when a side is empty."""
    if n_a <= 0 or n_b <= 0:
        return 0.0
    pooled = (errors_a + errors_b) / (n_a + n_b)
    spread = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n_a + 1 / n_b))
    return (errors_a / n_a - errors_b / n_b) / spread


def affected(count: float, since_ts: int, first_ts: int, now_ts: int) -> int:
    """Approximate count of the ``count`` events seen over [first_ts, now_ts] that fell after ``since_ts``."""
    span = max(now_ts - first_ts, 1)
    return int(round(count * min(1.0, max(now_ts - since_ts, 0) / span)))


@dataclass
class CusumAlarm:
    """A CUSUM crossing: direction, the run since the statistic left zero, and that run's raw moments."""

    direction: int  # +1 up, -1 down
    start_ts: int
    n: int
    mean_rank: float
    recent: Moments


@dataclass
class _Side:
    stat: float = 0.0
    start_ts: int = 0
    n: int = 0
    rank_sum: float = 0.0
    raw_sum: float = 0.0
    raw_squares: float = 0.0

    def step(self, ts: int, gain: float, rank: float, value: float) -> None:
        if self.stat <= 0.0:
            self.stat, self.start_ts, self.n, self.rank_sum, self.raw_sum, self.raw_squares = 0.0, ts, 0, 0.0, 0.0, 0.0
        self.stat = max(0.0, self.stat + gain)
        self.n += 1
        self.rank_sum += rank
        self.raw_sum += value
        self.raw_squares += value * value

    def alarm(self, direction: int) -> CusumAlarm:
        mean = self.raw_sum / self.n
        m2 = max(self.raw_squares - self.n * mean * mean, 0.0)
        return CusumAlarm(direction, self.start_ts, self.n, self.rank_sum / self.n, Moments(self.n, mean, m2))


@dataclass
class RankCusum:
    """Two-sided CUSUM on the mid-ranks of values in a reference sample of the stream's own past.

    The first ``reference_size`` values become the reference, but only once the stream is
    stable: while the later half of the sample ranks apart from the earlier half (Mann-Whitney
    ``|z| > stability_z``; an online model still converging, a start-up transient) the earlier
    half is dropped and collection goes on. Each later value becomes its mid-rank in the
    reference, standardised by the reference's own mid-rank spread (ties shrink it), so the
    statistic has the same null behaviour whatever the value's scale, skew or ties. The
    reference keeps growing to ``max_reference`` with values seen while both sides are quiet.

    ``slack`` (k) is half the smallest shift worth finding, in standard deviations of the
    standardised rank; ``threshold`` (h) sets the in-control run length: for normal-like
    increments each side's mean time to a false alarm is about
    ``(exp(2k(h+1.166)) - 2k(h+1.166) - 1) / (2k^2)`` values (Siegmund), ~4e7 with the
    defaults (k=0.25, h=30): years at thousands of values a day.
    """

    slack: float = 0.25
    threshold: float = 30.0
    reference_size: int = 500
    max_reference: int = 1000
    stability_z: float = 4.0
    reference: list[float] = field(default_factory=list)
    _warmup: list[float] = field(default_factory=list)
    _scale: float = 0.0
    _up: _Side = field(default_factory=_Side)
    _down: _Side = field(default_factory=_Side)

    @property
    def ready(self) -> bool:
        return self._scale > 0.0

    @property
    def scale(self) -> float:
        """Standard deviation of a reference value's mid-rank (0 until the reference is fixed)."""
        return self._scale

    def update(self, ts: int, value: float) -> CusumAlarm | None:
        """Learn ``value``; a ``CusumAlarm`` when either side crosses the threshold."""
        if not self.ready:
            self._collect(value)
            return None
        rank = self.rank(value)
        x = (rank - 0.5) / self._scale
        self._up.step(ts, x - self.slack, rank, value)
        self._down.step(ts, -x - self.slack, rank, value)
        if self._up.stat > self.threshold:
            return self._up.alarm(+1)
        if self._down.stat > self.threshold:
            return self._down.alarm(-1)
        if len(self.reference) < self.max_reference and max(self._up.stat, self._down.stat) < self.threshold / 4:
            insort(self.reference, value)
        return None

    def rank(self, value: float) -> float:
        reference = self.reference
        return (bisect_left(reference, value) + bisect_right(reference, value)) / (2 * len(reference))

    def quiet(self) -> None:
        """Forget the current excursion (after an alarm that was judged too small to report)."""
        self._up, self._down = _Side(), _Side()

    def _collect(self, value: float) -> None:
        self._warmup.append(value)
        if len(self._warmup) < self.reference_size:
            return
        half = len(self._warmup) // 2
        if abs(_mann_whitney_z(self._warmup[:half], self._warmup[half:])) > self.stability_z:
            del self._warmup[:half]  # still settling: the earlier half is not a baseline
            return
        self.reference = sorted(self._warmup)
        self._warmup = []
        self._scale = _midrank_std(self.reference)
        if self._scale <= 0.0:  # a constant stream: any new value is a change worth a look
            self._scale = 1e-3


def _midrank_std(ordered: list[float]) -> float:
    """Spread of the reference's mid-ranks within itself (1/sqrt(12) without ties, less with them)."""
    n = len(ordered)
    total = 0.0
    for value in ordered:
        rank = (bisect_left(ordered, value) + bisect_right(ordered, value)) / (2 * n)
        total += (rank - 0.5) ** 2
    return math.sqrt(total / n)


def _mann_whitney_z(first: list[float], second: list[float]) -> float:
    """Normal approximation of the Mann-Whitney U statistic of ``second`` against ``first``."""
    ordered = sorted(first)
    n1, n2 = len(first), len(second)
    u = sum(bisect_left(ordered, value) + (bisect_right(ordered, value) - bisect_left(ordered, value)) / 2
            for value in second)
    spread = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return (u - n1 * n2 / 2) / spread if spread > 0 else 0.0
