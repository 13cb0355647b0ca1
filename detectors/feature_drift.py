"""Feature drift: the values of one input feature of a model version moved away from their reference.

The first ``warmup`` values of each ``(model_id, model_version, feature)`` become a sorted
reference sample. Every later value is replaced by its mid-rank in that sample, a number in
[0, 1] whose mean is 0.5 whatever the feature's scale, skew or ties (a robust transform:
a lognormal amount and a small integer count look alike). River's ADWIN watches the
transformed stream; a cut only becomes a finding when the recent regime differs from the
baseline by at least ``min_effect`` baseline standard deviations *or* by a population
stability index (PSI over ``n_bins`` reference-quantile bins) of at least ``min_psi``, with
at least ``min_recent`` recent values (checked for ``recheck`` values after each cut, since
ADWIN may cut before the new regime is that long). Slow ramps are caught too: ADWIN
compares all splits of its window, so a mean that creeps for hours eventually separates from
the old one. After a finding the feature relearns a reference from the new regime, and further cuts
within ``cooldown_ms`` (a ramp still under way) are learned silently: one change, one finding.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar

from river import drift

from detectors._regime import Moments, RecentBlocks, Regime, adwin, affected, iso_utc
from detectors.base import register
from detectors.events import Event, PredictionEvent
from detectors.findings import Finding

ModelKey = tuple[str, str]


@dataclass
class _FeatureState:
    """One feature: its reference sample, then its transformed stream since that reference."""

    reference: list[float] = field(default_factory=list)
    adwin: drift.ADWIN | None = None
    moments: Moments = field(default_factory=Moments)
    bins: list[int] = field(default_factory=list)
    blocks: RecentBlocks | None = None
    since_ts: int = 0
    pending: int = 0  # values left in which to confirm ADWIN's last cut
    quiet_until: int = -1  # event time before which a confirmed cut is learned but not reported


@dataclass
class _ModelState:
    first_ts: int
    predictions: int = 0
    features: dict[str, _FeatureState] = field(default_factory=dict)


@register("feature_drift")
class FeatureDriftDetector:
    """Finds a lasting change in the distribution of a model's input feature.

    Example: feature ``x`` of ``churn:v1`` moves from N(0, 1) to N(0.8, 1) at event 3000;
    ``amount`` and ``visits`` never change.

    >>> from detectors._testing import feature_stream
    >>> events = feature_stream(seed=5, n=8_000, change_at=3_000, shift=0.8)
    >>> detector = FeatureDriftDetector()
    >>> [(i, f.evidence["feature"]) for i, e in enumerate(events) if (f := detector.update(e))]
    [(3155, 'x')]
    """

    name: ClassVar[str] = "feature_drift"
    event_types: ClassVar[tuple[type, ...]] = (PredictionEvent,)
    kind: ClassVar[str] = "feature_drift"

    def __init__(
        self,
        delta: float = 1e-5,
        warmup: int = 500,
        min_recent: int = 100,
        min_effect: float = 0.35,
        min_psi: float = 0.25,
        n_bins: int = 10,
        max_features: int = 50,
        max_keys: int = 10_000,
        recheck: int = 256,
        cooldown_ms: int = 6 * 3_600_000,
    ) -> None:
        self.delta = delta
        self.warmup = warmup
        self.min_recent = min_recent
        self.min_effect = min_effect
        self.min_psi = min_psi
        self.n_bins = n_bins
        self.max_features = max_features
        self.max_keys = max_keys
        self.recheck = recheck
        self.cooldown_ms = cooldown_ms
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[ModelKey, _ModelState] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """Model versions holding learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "FeatureDriftDetector":
        return FeatureDriftDetector(
            self.delta, self.warmup, self.min_recent, self.min_effect, self.min_psi, self.n_bins,
            self.max_features, self.max_keys, self.recheck, self.cooldown_ms,
        )

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, PredictionEvent) or event.is_feedback or not event.features:
            return None
        state = self._state_for((event.model_id, event.model_version), event.ts)
        state.predictions += 1
        found = None
        for feature in sorted(event.features):
            value = float(event.features[feature])
            feature_state = self._feature_state(state, feature)
            if feature_state is None or not math.isfinite(value):
                continue
            finding = self._learn(event, state, feature, feature_state, value)
            if finding is not None and (found is None or finding.score > found.score):
                found = finding
        return found

    def _feature_state(self, state: _ModelState, feature: str) -> _FeatureState | None:
        feature_state = state.features.get(feature)
        if feature_state is None and len(state.features) < self.max_features:
            feature_state = state.features[feature] = _FeatureState()
        return feature_state

    def _learn(
        self, event: PredictionEvent, state: _ModelState, feature: str, feature_state: _FeatureState, value: float
    ) -> Finding | None:
        if feature_state.adwin is None or feature_state.blocks is None:
            self._warm_up(feature_state, value, event.ts)
            return None
        reference = feature_state.reference
        rank = (bisect_left(reference, value) + bisect_right(reference, value)) / (2 * len(reference))
        bin_index = min(int(rank * self.n_bins), self.n_bins - 1)
        feature_state.adwin.update(rank)  # type: ignore[no-untyped-call]  # river is untyped here
        feature_state.moments.update(rank)
        feature_state.bins[bin_index] += 1
        feature_state.blocks.add(event.ts, rank, bin_index)
        if feature_state.adwin.drift_detected:
            # ADWIN may cut before the new regime holds ``min_recent`` values; keep checking a while.
            feature_state.pending = self.recheck
        if feature_state.pending <= 0:
            return None
        feature_state.pending -= 1
        return self._on_cut(event, state, feature, feature_state)

    def _warm_up(self, feature_state: _FeatureState, value: float, ts: int) -> None:
        feature_state.reference.append(value)
        if len(feature_state.reference) >= self.warmup:
            feature_state.reference.sort()
            feature_state.adwin = adwin(self.delta)
            feature_state.bins = [0] * self.n_bins
            feature_state.blocks = RecentBlocks(16, 64, self.n_bins)
            feature_state.since_ts = ts

    def _on_cut(
        self, event: PredictionEvent, state: _ModelState, feature: str, feature_state: _FeatureState
    ) -> Finding | None:
        assert feature_state.blocks is not None
        recent = feature_state.blocks.recent_regime()
        baseline = feature_state.moments.minus(recent.moments)
        if recent.moments.n < self.min_recent or baseline.n < self.min_recent:
            return None
        baseline_bins = [total - part for total, part in zip(feature_state.bins, recent.bins)]
        effect = abs(recent.moments.mean - baseline.mean) / max(baseline.std, 1e-9)
        psi = _psi(baseline_bins, recent.bins)
        if effect < self.min_effect and psi < self.min_psi:
            return None
        # The new regime becomes the reference to learn from scratch: one change, one finding.
        state.features[feature] = _FeatureState(quiet_until=event.ts + self.cooldown_ms)
        if event.ts < feature_state.quiet_until:
            return None
        return self._finding(event, state, feature, baseline, recent, effect, psi)

    def _state_for(self, key: ModelKey, ts: int) -> _ModelState:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _ModelState(ts)
            while len(self._states) > self.max_keys:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key)
        return state

    def _finding(
        self, event: PredictionEvent, state: _ModelState, feature: str, baseline: Moments, recent: Regime,
        effect: float, psi: float,
    ) -> Finding:
        start = min(recent.start_ts, event.ts)
        hit = affected(state.predictions, start, state.first_ts, event.ts)
        evidence = {
            "feature": feature,
            "baseline_mean_rank": f"{baseline.mean:.4f}",
            "recent_mean_rank": f"{recent.moments.mean:.4f}",
            "n_before": str(int(baseline.n)),
            "n_after": str(int(recent.moments.n)),
            "effect_size_std": f"{effect:.3f}",
            "psi": f"{psi:.3f}",
            "affected_predictions": str(hit),
            "adwin_delta": f"{self.delta:g}",
            "change_began": iso_utc(start),
        }
        strength = min(1.0, max(effect / (3 * self.min_effect), psi / (3 * self.min_psi)))
        return Finding(
            kind=self.kind, detector=self.name, ts=event.ts, window_start=start, window_end=event.ts,
            score=effect, threshold=self.min_effect, strength=strength,
            summary=_summary(event, feature, baseline, recent, effect, psi, hit, start),
            model_id=event.model_id, model_version=event.model_version, evidence=evidence,
            recommended_actions=(
                f"Check the upstream pipeline that produces feature {feature!r} (schema, units, missing values)",
                f"Review decisions of {event.model_id}:{event.model_version} made since {iso_utc(start)}",
                "If the world really changed, retrain on recent data; if the pipeline broke, fix it and backfill",
            ),
        )


def _psi(baseline: list[int], recent: list[int]) -> float:
    """Population stability index between two histograms over the same bins (smoothed)."""
    base_total, recent_total = sum(baseline) + len(baseline), sum(recent) + len(recent)
    value = 0.0
    for base_count, recent_count in zip(baseline, recent):
        base_share, recent_share = (base_count + 1) / base_total, (recent_count + 1) / recent_total
        value += (recent_share - base_share) * math.log(recent_share / base_share)
    return value


def _summary(
    event: PredictionEvent, feature: str, baseline: Moments, recent: Regime, effect: float, psi: float,
    hit: int, start: int,
) -> str:
    direction = "higher" if recent.moments.mean > baseline.mean else "lower"
    return (
        f"Input feature {feature!r} of model {event.model_id} version {event.model_version} shifted {direction}: "
        f"its mean position in the reference distribution moved from {baseline.mean:.3f} "
        f"({int(baseline.n)} values) to {recent.moments.mean:.3f} over the last {int(recent.moments.n)} values, "
        f"since about {iso_utc(start)} (effect {effect:.2f} standard deviations, PSI {psi:.2f}). "
        f"About {hit} predictions made since then used the shifted input and may be wrong; "
        f"check the feature's upstream pipeline before trusting them."
    )
