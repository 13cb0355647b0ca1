"""Prediction drift: the score stream of one model version moved away from its own past.

River's ADWIN watches each ``(model_id, model_version)`` score stream; when it cuts its
window, the part it dropped is the baseline and the part it kept is the recent regime. A
cut only becomes a finding after a warm-up and when the shift is large in both absolute
terms and in baseline standard deviations (Cohen's d), so a huge healthy stream with tiny
wobbles stays quiet. After a finding the key's baseline restarts from the new regime:
one change, one finding.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar

from river import drift

from detectors.base import register
from detectors.events import Event, PredictionEvent
from detectors.findings import Finding

ModelKey = tuple[str, str]


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations (Welford), mergeable and subtractable."""

    n: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def minus(self, part: "_Moments") -> "_Moments":
        """The moments of the events in ``self`` that are not in ``part`` (``part`` is a suffix)."""
        rest_n = self.n - part.n
        if rest_n <= 0:
            return _Moments()
        rest_mean = (self.mean * self.n - part.mean * part.n) / rest_n
        gap = part.mean - rest_mean
        rest_m2 = self.m2 - part.m2 - gap * gap * rest_n * part.n / self.n
        return _Moments(rest_n, rest_mean, max(rest_m2, 0.0))

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


# One block of consecutive scores: (first event ts, count, sum, sum of squares).
Block = tuple[int, int, float, float]


@dataclass
class _ModelState:
    """What is learned about one model version's scores since its last finding."""

    adwin: drift.ADWIN
    moments: _Moments = field(default_factory=_Moments)
    # The most recent scores in fixed-size blocks: enough to date a change ADWIN confirms.
    blocks: deque[Block] = field(default_factory=deque)


@register("score_drift")
class ScoreDriftDetector:
    """Finds a lasting shift in a model version's prediction scores.

    Example: scores drawn from Beta(3, 7) (mean 0.3) jump to Beta(6, 4) (mean 0.6) at
    event 1000; the shift is caught 87 events later and dated to event 992.

    >>> from detectors._testing import score_stream
    >>> events = score_stream(seed=7, n=3000, change_at=1000)
    >>> detector = ScoreDriftDetector()
    >>> found = [(i, f.kind) for i, e in enumerate(events) if (f := detector.update(e))]
    >>> found
    [(1087, 'prediction_drift')]
    """

    name: ClassVar[str] = "score_drift"
    event_types: ClassVar[tuple[type, ...]] = (PredictionEvent,)
    kind: ClassVar[str] = "prediction_drift"

    def __init__(
        self,
        delta: float = 1e-5,
        warmup: int = 200,
        min_effect: float = 0.5,
        min_shift: float = 0.05,
        max_keys: int = 10_000,
        block_size: int = 16,
        max_blocks: int = 64,
    ) -> None:
        self.delta = delta
        self.warmup = warmup
        self.min_effect = min_effect
        self.min_shift = min_shift
        self.max_keys = max_keys
        self.block_size = block_size
        self.max_blocks = max_blocks
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[ModelKey, _ModelState] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """How many model versions currently hold learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "ScoreDriftDetector":
        return ScoreDriftDetector(
            self.delta, self.warmup, self.min_effect, self.min_shift, self.max_keys, self.block_size, self.max_blocks
        )

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, PredictionEvent) or event.is_feedback or event.score is None:
            return None
        score = float(event.score)
        if not math.isfinite(score):
            return None
        state = self._state_for((event.model_id, event.model_version))
        state.adwin.update(score)  # type: ignore[no-untyped-call]  # river is untyped here
        state.moments.update(score)
        self._add_to_block(state.blocks, event.ts, score)
        if not state.adwin.drift_detected or state.moments.n < self.warmup:
            return None
        return self._on_cut(event, state)

    def _add_to_block(self, blocks: deque[Block], ts: int, score: float) -> None:
        if blocks and blocks[-1][1] < self.block_size:
            first_ts, count, total, squares = blocks.pop()
            blocks.append((first_ts, count + 1, total + score, squares + score * score))
            return
        blocks.append((ts, 1, score, score * score))
        if len(blocks) > self.max_blocks:
            blocks.popleft()

    def _state_for(self, key: ModelKey) -> _ModelState:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _ModelState(_adwin(self.delta))
            while len(self._states) > self.max_keys:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key)
        return state

    def _on_cut(self, event: PredictionEvent, state: _ModelState) -> Finding | None:
        recent, window_start = _recent_regime(state.blocks)
        baseline = state.moments.minus(recent)
        if baseline.n < self.warmup:
            return None
        finding = self._judge(event, baseline, recent, window_start)
        if finding is not None:
            # The new regime becomes the baseline to learn from scratch: one change, one finding.
            self._states[(event.model_id, event.model_version)] = _ModelState(_adwin(self.delta))
        return finding

    def _judge(self, event: PredictionEvent, baseline: _Moments, recent: _Moments, start: int) -> Finding | None:
        shift = recent.mean - baseline.mean
        effect = abs(shift) / max(baseline.std, 1e-9)
        if abs(shift) < self.min_shift or effect < self.min_effect:
            return None
        evidence = {
            "baseline_mean": f"{baseline.mean:.4f}",
            "baseline_std": f"{baseline.std:.4f}",
            "recent_mean": f"{recent.mean:.4f}",
            "recent_std": f"{recent.std:.4f}",
            "n_before": str(int(baseline.n)),
            "n_after": str(int(recent.n)),
            "mean_shift": f"{shift:+.4f}",
            "effect_size_cohens_d": f"{effect:.3f}",
            "adwin_delta": f"{self.delta:g}",
            "change_began": _iso(start),
        }
        return Finding(
            kind=self.kind,
            detector=self.name,
            ts=event.ts,
            window_start=start,
            window_end=event.ts,
            score=effect,
            threshold=self.min_effect,
            strength=min(1.0, effect / 2.0),
            summary=_summary(event, baseline, recent, effect, start, self.delta),
            model_id=event.model_id,
            model_version=event.model_version,
            evidence=evidence,
            recommended_actions=(
                f"Hold automated decisions from {event.model_id}:{event.model_version} for human review",
                "Compare recent inputs with the training data to find the shifted features",
                "Roll back to the previous model version if the shift is not explained by real-world change",
            ),
        )


def _adwin(delta: float) -> drift.ADWIN:
    return drift.ADWIN(delta=delta)  # type: ignore[no-untyped-call]  # river is untyped here


def _recent_regime(blocks: deque[Block]) -> tuple[_Moments, int]:
    """Moments and start time of the suffix of ``blocks`` that differs most from what precedes it."""
    counts = [block[1] for block in blocks]
    sums = [block[2] for block in blocks]
    total_n, total_sum = sum(counts), sum(sums)
    best, best_split, head_n, head_sum = -1.0, len(blocks) - 1, 0, 0.0
    for split in range(1, len(blocks)):
        head_n += counts[split - 1]
        head_sum += sums[split - 1]
        tail_n = total_n - head_n
        gap = abs((total_sum - head_sum) / tail_n - head_sum / head_n)
        score = gap * math.sqrt(head_n * tail_n / total_n)
        if score > best:
            best, best_split = score, split
    return _moments_of(list(blocks)[best_split:]), blocks[best_split][0]


def _moments_of(blocks: list[Block]) -> _Moments:
    n = float(sum(block[1] for block in blocks))
    total = sum(block[2] for block in blocks)
    squares = sum(block[3] for block in blocks)
    mean = total / n
    return _Moments(n, mean, max(squares - n * mean * mean, 0.0))


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def _summary(
    event: PredictionEvent, baseline: _Moments, recent: _Moments, effect: float, start: int, delta: float
) -> str:
    direction = "up" if recent.mean > baseline.mean else "down"
    return (
        f"Prediction scores of model {event.model_id} version {event.model_version} moved {direction} "
        f"from mean {baseline.mean:.3f} (std {baseline.std:.3f}, {int(baseline.n)} predictions) to "
        f"{recent.mean:.3f} over the last {int(recent.n)} predictions, since about {_iso(start)}; "
        f"effect size d={effect:.2f}, confirmed by ADWIN at confidence 1-{delta:g}. "
        f"Hold its automated decisions for review and check recent inputs against the training data."
    )
