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
from functools import reduce
from operator import add, mul
from typing import Sequence

import numpy as np
import numpy.typing as npt
from river import drift

from detectors._compiled import kernels as _kernels

FloatArray = npt.NDArray[np.float64]
#: A sorted sample's distinct values closed by +inf, how many values lie below each (closed by the
#: sample's size, twice: nothing equals the +inf), and the size.
_DistinctCounts = tuple[FloatArray, npt.NDArray[np.int32], int]

#: Fewer values than this are ranked one by one: numpy's fixed cost per call would outweigh its speed.
_MIN_VECTORISED = 16


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

    def catch_up(self, stat: float, first_ts: int | None, ranks: list[float], values: list[float]) -> None:
        """The state ``step`` leaves after the run's latest ``ranks`` and ``values``, its statistic now ``stat``.

        ``first_ts`` is when the run began if it began among them (``None``: it goes on from
        before). Sums are taken in the same order as ``step`` adds them, so they are equal.
        """
        if first_ts is not None:
            self.start_ts, self.n, self.rank_sum, self.raw_sum, self.raw_squares = first_ts, 0, 0.0, 0.0, 0.0
        self.stat = max(0.0, stat)
        self.n += len(ranks)
        self.rank_sum = reduce(add, ranks, self.rank_sum)
        self.raw_sum = reduce(add, values, self.raw_sum)
        self.raw_squares = reduce(add, map(mul, values, values), self.raw_squares)

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
    _distinct: _DistinctCounts | None = field(default=None, repr=False, compare=False)  # of the full reference

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
            self._collect([value])
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

    def __getstate__(self) -> dict[str, object]:
        """Snapshots leave out the ranking table: it is rebuilt from ``reference`` when needed."""
        return {**self.__dict__, "_distinct": None}

    def rank(self, value: float) -> float:
        reference = self.reference
        return (bisect_left(reference, value) + bisect_right(reference, value)) / (2 * len(reference))

    def update_many(self, stamps: Sequence[int], values: FloatArray, start: int = 0) -> tuple[int, CusumAlarm] | None:
        """Learn ``values[start:]`` (seen at ``stamps``; never NaN) in order until a side crosses: its index and alarm.

        The same as ``update`` on each value in turn, then ``None`` if none crossed. Once the
        reference is full it no longer changes, so a run of values is ranked at once (numpy)
        and only the CUSUM recursion goes value by value. After an alarm the caller decides
        (``quiet``, or a new ``RankCusum``) and goes on from the next index.
        """
        index, end = start, len(values)
        while index < end:
            if not self.ready:
                index += self._collect(values[index:].tolist())
            elif self.threshold <= 0.0:  # the loops below rely on a positive threshold
                if (alarm := self.update(stamps[index], float(values[index]))) is not None:
                    return index, alarm
                index += 1
            elif len(self.reference) >= self.max_reference and end - index >= _MIN_VECTORISED:
                return self._run_fixed(stamps, values, index)
            else:
                index, alarm = self._run_growing(stamps, values[index:].tolist(), index)
                if alarm is not None:
                    return index, alarm
        return None

    def quiet(self) -> None:
        """Forget the current excursion (after an alarm that was judged too small to report)."""
        self._up, self._down = _Side(), _Side()

    def _run_growing(self, stamps: Sequence[int], values: list[float], start: int) -> tuple[int, CusumAlarm | None]:
        """``update`` on ``values`` (from index ``start`` on) until an alarm, their end or a full reference.

        One loop with the sides' statistics in locals; the runs' sums are caught up at the
        end. Returns the alarm's index, else the index to go on from.
        """
        reference, scale, slack, threshold = self.reference, self._scale, self.slack, self.threshold
        quarter, room = threshold / 4, self.max_reference - len(reference)
        up, down, up_start, down_start, ranks = self._up.stat, self._down.stat, -1, -1, []
        for value in values:
            rank = (bisect_left(reference, value) + bisect_right(reference, value)) / (2 * len(reference))
            ranks.append(rank)
            x = (rank - 0.5) / scale
            if up > 0.0:
                up += x - slack
            else:
                up, up_start = x - slack, len(ranks) - 1
            if down > 0.0:
                down += -x - slack
            else:
                down, down_start = -x - slack, len(ranks) - 1
            if up > threshold or down > threshold:
                break
            if room > 0 and up < quarter and down < quarter:  # both sides quiet: a value of the stable past
                insort(reference, value)
                room -= 1
                if not room:
                    break
        alarm = self._catch_up(stamps, start, ranks, values, (up, up_start), (down, down_start))
        stepped = start + len(ranks)
        return (stepped - 1, alarm) if alarm is not None else (stepped, None)

    def _run_fixed(self, stamps: Sequence[int], values: FloatArray, start: int) -> tuple[int, CusumAlarm] | None:
        """``update_many`` from ``start`` on while the reference stays as it is (full: nothing is added)."""
        ranks = self._ranks(values[start:])
        standardised = (ranks - 0.5) / self._scale  # the same float operations as ``update``, value by value
        last, up, down, up_start, down_start = _cusum_run(
            self._up.stat, self._down.stat, standardised, self.slack, self.threshold,
        )
        first = 0 if min(up_start, down_start) < 0 else min(up_start, down_start)  # where the runs began
        alarm = self._catch_up(
            stamps, start + first, ranks[first:last + 1].tolist(), values[start + first:start + last + 1].tolist(),
            (up, up_start - first if up_start >= 0 else -1), (down, down_start - first if down_start >= 0 else -1),
        )
        return None if alarm is None else (start + last, alarm)

    def _catch_up(
        self, stamps: Sequence[int], offset: int, ranks: list[float], values: list[float], up: tuple[float, int],
        down: tuple[float, int],
    ) -> CusumAlarm | None:
        """Bring both sides to where ``update`` would leave them after these ``ranks``; the alarm, if any.

        The ranks (and ``values``, which may go on past them) are those of the values from
        index ``offset`` on. Each side is given as its statistic and the index in ``ranks``
        at which its run began (-1: before them).
        """
        for side, (stat, run_start) in ((self._up, up), (self._down, down)):
            first = max(run_start, 0)
            side.catch_up(stat, stamps[offset + run_start] if run_start >= 0 else None, ranks[first:],
                          values[first:len(ranks)])
        if self._up.stat > self.threshold:
            return self._up.alarm(+1)
        if self._down.stat > self.threshold:
            return self._down.alarm(-1)
        return None

    def _ranks(self, values: FloatArray) -> FloatArray:
        """``rank`` of each value at once: ``bisect_left + bisect_right`` counted from the reference's distinct values.

        Compiled: a binary search per value; ``_py_ranks`` (numpy) is its tested twin. The
        final division is the same as ``rank``'s.
        """
        if self._distinct is None or self._distinct[2] != len(self.reference):  # it only grows: same length, same
            self._distinct = _distinct_counts(self.reference)
        distinct, below, n = self._distinct
        if _kernels is not None:  # one compiled binary search per value (detectors/_kernels.c ranks)
            return np.frombuffer(_kernels.ranks(np.ascontiguousarray(values), distinct, below, n), np.float64)
        return _py_ranks(values, self._distinct)

    def _collect(self, values: list[float]) -> int:
        """Add ``values`` to the warm-up sample until the reference is fixed; how many were taken.

        Taking up to the sample's size at once is the same as one by one: nothing is decided
        below it.
        """
        taken = 0
        while taken < len(values) and not self.ready:
            wanted = max(self.reference_size - len(self._warmup), 1)
            self._warmup.extend(values[taken:taken + wanted])
            taken = min(taken + wanted, len(values))
            if len(self._warmup) >= self.reference_size:
                self._fix_reference()
        return taken

    def _fix_reference(self) -> None:
        """Make the warm-up sample the reference if it is stable, else drop its earlier half."""
        half = len(self._warmup) // 2
        if abs(_mann_whitney_z(self._warmup[:half], self._warmup[half:])) > self.stability_z:
            del self._warmup[:half]  # still settling: the earlier half is not a baseline
            return
        self.reference = sorted(self._warmup)
        self._warmup = []
        self._scale = _midrank_std(self.reference)
        if self._scale <= 0.0:  # a constant stream: any new value is a change worth a look
            self._scale = 1e-3


def _py_cusum_run(
    up: float, down: float, standardised: FloatArray, slack: float, threshold: float,
) -> tuple[int, float, float, int, int]:
    """Both CUSUM sides over ``standardised`` until one exceeds ``threshold`` (>= 0) or the values end.

    Each value ``x`` gains ``x - slack`` on the up side and ``-x - slack`` on the down side.
    Returns the last index stepped, the sides' statistics then (below zero where ``step``
    would hold zero: the next gain restarts the run all the same) and the index at which
    each side's current run began (-1: before these values). The hot loop of ``update_many``;
    ``detectors/_kernels.c`` has it compiled (``_cusum_run``), this is the reference.
    """
    up_gains, down_gains = (standardised - slack).tolist(), (-standardised - slack).tolist()
    up_start = down_start = -1
    for index, gain in enumerate(up_gains):
        if up > 0.0:
            up += gain
        else:
            up, up_start = gain, index
        gain = down_gains[index]
        if down > 0.0:
            down += gain
        else:
            down, down_start = gain, index
        if up > threshold or down > threshold:
            return index, up, down, up_start, down_start
    return len(up_gains) - 1, up, down, up_start, down_start


_cusum_run = _py_cusum_run if _kernels is None else _kernels.cusum_run


def _py_ranks(values: FloatArray, distinct_counts: _DistinctCounts) -> FloatArray:
    """``RankCusum._ranks`` in numpy: the reference the compiled ranks are tested against.

    Searching in sorted order is far cheaper (numpy reuses the last position).
    """
    distinct, below, n = distinct_counts
    order = np.argsort(values)
    ordered = values[order]
    found = np.searchsorted(distinct, ordered)
    left = below[found]
    both_sides = np.empty(len(values), dtype=np.int64)
    both_sides[order] = 2 * left + (distinct[found] == ordered) * (below[found + 1] - left)
    ranks: FloatArray = both_sides / (2 * n)
    return ranks


def _distinct_counts(ordered: list[float]) -> _DistinctCounts:
    """``ordered`` (sorted, no NaN) as its distinct values and how many values lie below each.

    The +inf at the end means a search never runs past the distinct values.
    """
    distinct, below = np.unique(np.array(ordered, dtype=np.float64), return_index=True)
    n = len(ordered)
    return np.append(distinct, np.inf), np.append(below, [n, n]).astype(np.int32), n


def _midrank_std(ordered: list[float]) -> float:
    """Spread of the reference's mid-ranks within itself (1/sqrt(12) without ties, less with them).

    Each value's ``bisect_left + bisect_right`` is counted from the distinct values (numpy);
    the squares are summed in order, as one value at a time would.
    """
    n = len(ordered)
    below = _distinct_counts(ordered)[1][:-1].astype(np.int64)  # the distinct values' and then the size
    count = np.diff(below)
    ranks = np.repeat((2 * below[:-1] + count) / (2 * n), count).tolist()
    total = 0.0
    for rank in ranks:
        total += (rank - 0.5) ** 2
    return math.sqrt(total / n)


def _mann_whitney_z(first: list[float], second: list[float]) -> float:
    """Normal approximation of the Mann-Whitney U statistic of ``second`` against ``first``."""
    ordered, later = np.sort(np.array(first, dtype=np.float64)), np.array(second, dtype=np.float64)
    n1, n2 = len(first), len(second)
    below = np.searchsorted(ordered, later, "left")
    u = sum((below + (np.searchsorted(ordered, later, "right") - below) / 2).tolist())  # the terms bisect gives
    spread = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return (u - n1 * n2 / 2) / spread if spread > 0 else 0.0
