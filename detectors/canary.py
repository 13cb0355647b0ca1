"""Canary regression: a model's new version, running beside the old one, behaves worse.

Two versions of one ``model_id`` are *concurrent* while both were seen within
``concurrency_ms`` of event time. Only concurrent traffic is compared, so a daily rhythm
or a change in the world affects both sides alike. The older version (first seen earlier)
is the baseline, the newer one the canary. Two signals, each reported once per pair:

* scores: histograms of both versions' scores (``n_bins`` bins over [0, 1]); a finding when
  the two-sample Kolmogorov-Smirnov distance is at least ``min_ks`` and above the critical
  value at ``alpha`` (both sides with at least ``min_scored`` scores);
* errors: once labels arrive (joined by a ``FeedbackJoin``, the detector's own or one a
  ``DetectorSet`` shares), a finding when the canary's error rate exceeds the baseline's by
  at least ``min_error_rise`` with a one-sided two-proportion z test below ``alpha`` (both
  sides with ``min_labels`` labels).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar, Mapping, Sequence

from detectors._lru import fits_without_eviction, touch_in_order
from detectors._regime import iso_utc, normal_sf, two_proportion_z
from detectors.base import JoinsFeedback, Positioned, fresh_copy, register
from detectors.batch import Batch, VersionRun
from detectors.events import Event, PredictionEvent
from detectors.feedback import DAY_MS, FeedbackJoin, Matched, is_error
from detectors.findings import Finding

VersionKey = tuple[str, str]
#: Covers the rounding of the KS distance and of its running upper bound (``_Pair.ks_bound``).
KS_BOUND_SLACK = 1e-9


@dataclass
class _VersionState:
    first_ts: int
    last_ts: int


@dataclass
class _Side:
    """One version's concurrent traffic: score histogram, predictions, labels and errors."""

    bins: list[int]
    scored: int = 0  # sum(bins), kept as it grows: it is read on every prediction
    predictions: int = 0
    labels: int = 0
    errors: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / max(self.labels, 1)


@dataclass
class _Pair:
    """A baseline version and its canary, compared since ``since_ts``."""

    old: str
    new: str
    since_ts: int
    sides: dict[str, _Side] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    # An upper bound of the KS distance between the sides: the last distance computed, plus
    # 1/N for every score added since to a side then holding N (no cumulative share moves
    # more), so the distance is only recomputed once it could have reached the threshold.
    ks_bound: float = math.inf


@register("canary_regression")
class CanaryRegressionDetector(JoinsFeedback):
    """Finds a new model version that scores or errs differently from the old one on concurrent traffic.

    Example: from prediction 5000, a fifth of ``churn`` traffic goes to ``v2``, whose scores
    follow Beta(6, 4) instead of Beta(3, 7); its error rate is the same.

    >>> from detectors._testing import canary_stream
    >>> events = canary_stream(seed=6, n=10_000, canary_from=5_000)
    >>> detector = CanaryRegressionDetector()
    >>> [(i, f.evidence["signal"], f.evidence["old_version"], f.model_version)
    ...  for i, e in enumerate(events) if (f := detector.update(e))]
    [(7855, 'scores', 'v1', 'v2')]
    """

    name: ClassVar[str] = "canary_regression"
    event_types: ClassVar[tuple[type, ...]] = (PredictionEvent,)
    kind: ClassVar[str] = "canary_regression"

    def __init__(
        self,
        concurrency_ms: int = 600_000,
        alpha: float = 1e-4,
        min_ks: float = 0.15,
        min_scored: int = 200,
        min_error_rise: float = 0.05,
        min_labels: int = 200,
        n_bins: int = 50,
        horizon_ms: int = 7 * DAY_MS,
        max_pending: int = 200_000,
        max_keys: int = 10_000,
    ) -> None:
        self.concurrency_ms = concurrency_ms
        self.alpha = alpha
        self.min_ks = min_ks
        self.min_scored = min_scored
        self.min_error_rise = min_error_rise
        self.min_labels = min_labels
        self.n_bins = n_bins
        self.horizon_ms = horizon_ms
        self.max_pending = max_pending
        self.max_keys = max_keys
        self._reset()

    def _reset(self) -> None:
        self._join = FeedbackJoin(self.horizon_ms, self.max_pending)
        self._versions: OrderedDict[VersionKey, _VersionState] = OrderedDict()
        self._latest: OrderedDict[str, tuple[str, ...]] = OrderedDict()  # model -> recent versions, newest first
        self._pairs: OrderedDict[str, _Pair] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """Model versions holding state (never above ``max_keys``)."""
        return len(self._versions)

    def clone(self) -> "CanaryRegressionDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        found = self.update_many((event,))
        return found[0][1] if found else None

    def update_matched(self, batch: Batch, matches: Sequence[Matched]) -> list[Positioned]:
        """``update_many`` with the batch's labels matched already (by ``feedback_join.feed``).

        Most of the time each model serves one version and has served no other lately: its
        predictions then only keep the version's last-seen time, so they are taken per version
        from the batch's grouping and only the labels are walked; else event by event.
        """
        by_version = batch.predictions_by_version()
        last_seen_by_model = self._one_version_per_model(by_version)
        if last_seen_by_model is None:
            return self._update_in_order(batch.events, matches)
        versions, latest = self._versions, self._latest
        for key, (_, events) in by_version.items():
            last_ts = max(event.ts for event in events)
            state = versions.get(key)
            if state is None:
                versions[key] = _VersionState(events[0].ts, last_ts)
            elif last_ts > state.last_ts:
                state.last_ts = last_ts
            if key[0] not in latest:
                latest[key[0]] = (key[1],)
        touch_in_order(versions, {key: positions[-1] for key, (positions, _) in by_version.items()})
        touch_in_order(latest, last_seen_by_model)
        found: list[Positioned] = []
        for label in matches:  # ``_on_label`` reads only the pairs, which these predictions leave alone
            finding = self._on_label(label.prediction, label.label, label.feedback_ts)
            if finding is not None:
                found.append((label.position, finding))
        return found

    def _one_version_per_model(self, by_version: Mapping[VersionKey, VersionRun]) -> dict[str, int] | None:
        """Each model's last prediction position, if every model in the batch serves one version and has
        served no other lately (nor can a version or model be evicted meanwhile); else ``None``."""
        last_seen: dict[str, int] = {}
        for (model, version), (positions, _) in by_version.items():
            latest = self._latest.get(model)
            if model in last_seen or latest is not None and latest != (version,):
                return None
            last_seen[model] = positions[-1]
        if not (fits_without_eviction(self._versions, by_version, self.max_keys)
                and fits_without_eviction(self._latest, last_seen, self.max_keys)):
            return None
        return last_seen

    def _update_in_order(self, events: Sequence[Event], matches: Sequence[Matched]) -> list[Positioned]:
        """``update_matched`` event by event."""
        found: list[Positioned] = []
        labels = iter(matches)
        label = next(labels, None)
        label_at = -1 if label is None else label.position
        for position, event in enumerate(events):
            if position == label_at:
                finding = self._on_label(label.prediction, label.label, label.feedback_ts)  # type: ignore[union-attr]
                label = next(labels, None)
                label_at = -1 if label is None else label.position
            elif isinstance(event, PredictionEvent) and (event.label is None or event.features):  # a prediction
                finding = self._on_prediction(event)
            else:
                continue
            if finding is not None:
                found.append((position, finding))
        return found

    def _on_prediction(self, event: PredictionEvent) -> Finding | None:
        recent = self._see(event)
        if len(recent) < 2:  # one version seen lately: nothing to compare (most traffic, most of the time)
            return None
        pair = self._pair_for(event, recent)
        if pair is None:
            return None
        side = pair.sides[event.model_version]
        side.predictions += 1
        if event.score is not None and math.isfinite(event.score):
            side.bins[min(max(int(float(event.score) * self.n_bins), 0), self.n_bins - 1)] += 1
            side.scored += 1
            pair.ks_bound += 1 / side.scored
        return self._judge_scores(event.model_id, pair, event.ts)

    def _see(self, event: PredictionEvent) -> tuple[str, ...]:
        """Note that ``event``'s version served now; the model's recent versions, newest first."""
        model, version = event.model_id, event.model_version
        key = (model, version)
        state = self._versions.get(key)
        if state is None:
            self._versions[key] = _VersionState(event.ts, event.ts)
            while len(self._versions) > self.max_keys:
                self._versions.popitem(last=False)
        else:
            if event.ts > state.last_ts:
                state.last_ts = event.ts
            self._versions.move_to_end(key)
        latest = self._latest.get(model)
        if latest is None:
            latest = self._latest[model] = (version,)
            while len(self._latest) > self.max_keys:
                self._latest.popitem(last=False)
            return latest
        if latest[0] != version:  # most predictions come from the version seen last: nothing to reorder
            latest = self._latest[model] = ((version,) + tuple(v for v in latest if v != version))[:3]
        self._latest.move_to_end(model)
        return latest

    def _pair_for(self, event: PredictionEvent, recent: tuple[str, ...]) -> _Pair | None:
        """The concurrent (baseline, canary) pair ``event`` belongs to, started or kept up to date."""
        model = event.model_id
        active = [v for v in recent if self._active(model, v, event.ts)]
        if len(active) < 2:
            return None
        ordered = sorted(active[:2], key=lambda version: (self._versions[(model, version)].first_ts, version))
        old, new = ordered[0], ordered[1]
        pair = self._pairs.get(model)
        if pair is None or (pair.old, pair.new) != (old, new):
            pair = _Pair(old, new, event.ts, {old: _Side([0] * self.n_bins), new: _Side([0] * self.n_bins)})
            self._pairs[model] = pair
            while len(self._pairs) > self.max_keys:
                self._pairs.popitem(last=False)
        self._pairs.move_to_end(model)
        return pair if event.model_version in pair.sides else None

    def _active(self, model: str, version: str, now: int) -> bool:
        state = self._versions.get((model, version))
        return state is not None and now - state.last_ts <= self.concurrency_ms

    def _on_label(self, prediction: PredictionEvent, label: str, now: int) -> Finding | None:
        model, version = prediction.model_id, prediction.model_version
        pair = self._pairs.get(model)
        if pair is None or version not in pair.sides or prediction.ts < pair.since_ts:
            return None
        side = pair.sides[version]
        side.labels += 1
        side.errors += int(is_error(prediction, label))
        return self._judge_errors(model, pair, now)

    def _judge_scores(self, model: str, pair: _Pair, now: int) -> Finding | None:
        old, new = pair.sides[pair.old], pair.sides[pair.new]
        if "scores" in pair.reported or old.scored < self.min_scored or new.scored < self.min_scored:
            return None
        n, m = old.scored, new.scored
        critical = math.sqrt(-0.5 * math.log(self.alpha / 2)) * math.sqrt((n + m) / (n * m))
        if pair.ks_bound + KS_BOUND_SLACK < max(self.min_ks, critical):
            return None
        distance = pair.ks_bound = _ks(old.bins, new.bins)
        if distance < max(self.min_ks, critical):
            return None
        pair.reported.add("scores")
        evidence = {
            "old_mean_score": f"{_mean(old.bins):.4f}", "new_mean_score": f"{_mean(new.bins):.4f}",
            "ks_distance": f"{distance:.4f}", "ks_critical": f"{critical:.4f}",
            "n_old": str(n), "n_new": str(m),
        }
        what = (f"its scores differ from {pair.old}'s: mean {_mean(new.bins):.3f} vs {_mean(old.bins):.3f}, "
                f"KS distance {distance:.2f} (critical {critical:.2f} at alpha {self.alpha:g}) over {m} vs {n} "
                f"concurrent predictions")
        return self._finding(model, pair, "scores", distance, max(self.min_ks, critical), evidence, what, now)

    def _judge_errors(self, model: str, pair: _Pair, now: int) -> Finding | None:
        old, new = pair.sides[pair.old], pair.sides[pair.new]
        if "errors" in pair.reported or old.labels < self.min_labels or new.labels < self.min_labels:
            return None
        rise = new.error_rate - old.error_rate
        p_value = normal_sf(two_proportion_z(new.errors, new.labels, old.errors, old.labels))
        if rise < self.min_error_rise or p_value >= self.alpha:
            return None
        pair.reported.add("errors")
        evidence = {
            "old_error_rate": f"{old.error_rate:.4f}", "new_error_rate": f"{new.error_rate:.4f}",
            "error_rate_rise": f"{rise:+.4f}", "p_value": f"{p_value:.3g}",
            "n_labels_old": str(old.labels), "n_labels_new": str(new.labels),
        }
        what = (f"its error rate is {new.error_rate:.1%} over {new.labels} labeled predictions against "
                f"{old.error_rate:.1%} over {old.labels} for {pair.old} on the same period (p={p_value:.2g})")
        return self._finding(model, pair, "errors", rise, self.min_error_rise, evidence, what, now)

    def _finding(self, model: str, pair: _Pair, signal: str, effect: float, threshold: float,
                 evidence: dict[str, str], what: str, now: int) -> Finding:
        new_predictions = pair.sides[pair.new].predictions
        evidence = {"signal": signal, "old_version": pair.old, "new_version": pair.new,
                    "effect_size": f"{effect:.4f}", "concurrent_since": iso_utc(pair.since_ts),
                    "affected_predictions": str(new_predictions), **evidence}
        summary = (
            f"Canary version {pair.new} of model {model}, running beside {pair.old} since about "
            f"{iso_utc(pair.since_ts)}: {what}. The {new_predictions} predictions {pair.new} served since then "
            f"may be wrong; shift traffic back to {pair.old} until the difference is explained."
        )
        return Finding(
            kind=self.kind, detector=self.name, ts=now, window_start=min(pair.since_ts, now), window_end=now,
            score=effect, threshold=threshold, strength=min(1.0, effect / (3 * threshold)), summary=summary,
            model_id=model, model_version=pair.new, evidence=evidence,
            recommended_actions=(
                f"Pause the rollout of {model}:{pair.new} and route its traffic back to {pair.old}",
                f"Review decisions made by {model}:{pair.new} since {iso_utc(pair.since_ts)}",
                "Compare the two versions' training data and features before resuming the rollout",
            ),
        )


def _ks(first: list[int], second: list[int]) -> float:
    """Kolmogorov-Smirnov distance between two histograms over the same bins."""
    n, m = sum(first), sum(second)
    distance, cum_first, cum_second = 0.0, 0, 0
    for a, b in zip(first, second):
        cum_first += a
        cum_second += b
        distance = max(distance, abs(cum_first / n - cum_second / m))
    return distance


def _mean(bins: list[int]) -> float:
    total = sum(bins)
    return sum((index + 0.5) / len(bins) * count for index, count in enumerate(bins)) / max(total, 1)
