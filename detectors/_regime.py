"""Shared bookkeeping for the prediction-side detectors: running moments, change dating, time text.

A drift detector (River ADWIN) says *that* a stream changed; ``RecentBlocks`` keeps the
last few hundred values in small blocks so a detector can say *since when* and compare the
new regime with what came before, with bounded memory per key.
"""

from __future__ import annotations

import math
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
