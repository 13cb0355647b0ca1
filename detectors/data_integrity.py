"""Data integrity: training-data changes that are too big, unapproved, or from a new source.

Two detectors on ``DataChangeEvent``:

* ``volume_spike`` (kind ``volume_spike``) - a change carries far more rows than the
  dataset's recent changes: the log row count is compared with the median and MAD of
  the last ``history`` accepted changes (a robust z-score, so one earlier outlier does not
  widen the baseline), and the ratio to the median must be at least ``min_ratio``.
  Flagged changes are not learned.
* ``unapproved_change`` - kind ``unapproved_change``:

  - a change approved by its own actor, on any dataset: self-approval defeats four-eyes
    review whatever the data is, so it is always flagged; its strength is higher when the
    dataset is high impact (listed in ``high_impact_datasets``, matching
    ``high_impact_prefixes``, or consumed by one of ``high_impact_models``) or has
    consumers (models train on it);
  - a change with no approval to a dataset that is high impact or, with
    ``consumed_is_impactful`` (the default), lists consumers: a dataset that trains
    models is impactful even when nobody configured it. A dataset with neither may be
    changed without approval (scratch and staging data).

  Separately, for every dataset, a change from a source never
  seen for it before (after ``source_warmup`` changes): kind ``provenance_mismatch``,
  because it is the data's origin, not its approval, that departs from its lineage, and
  responders handle it like other provenance findings (freeze, re-verify the lineage).
  When a change is both, one ``unapproved_change`` finding carries both facts. Each
  (dataset, source) pair is reported as new only once.
"""

from __future__ import annotations

import math
import statistics
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar

from detectors._lru import lru_get
from detectors.base import fresh_copy, register
from detectors.events import DataChangeEvent, Event
from detectors.findings import Finding

_MAD_TO_SIGMA = 1.4826


@dataclass
class _VolumeState:
    log_rows: deque[float]
    alarmed_version: str | None = None


@register("volume_spike")
class VolumeSpikeDetector:
    """Finds a dataset change with many more rows than the dataset's recent changes.

    Example: hourly appends of 800-1,200 rows to ``transactions``; change 30 carries
    12,000 rows and is caught on arrival.

    >>> from dataclasses import replace
    >>> from detectors._testing import data_change_stream
    >>> events = data_change_stream(seed=3, n=50)
    >>> events[30] = replace(events[30], rows=12_000)
    >>> detector = VolumeSpikeDetector()
    >>> [(i, f.kind, f.evidence["version"], f.evidence["ratio_to_median"]) for i, e in enumerate(events)
    ...  if (f := detector.update(e))]
    [(30, 'volume_spike', 'v31', '11.84')]
    """

    name: ClassVar[str] = "volume_spike"
    event_types: ClassVar[tuple[type, ...]] = (DataChangeEvent,)
    kind: ClassVar[str] = "volume_spike"

    def __init__(
        self,
        min_ratio: float = 3.0,
        z_threshold: float = 6.0,
        min_rows: int = 1_000,
        history: int = 64,
        warmup: int = 5,
        min_spread: float = 0.05,
        max_keys: int = 100_000,
    ) -> None:
        self.min_ratio = min_ratio
        self.z_threshold = z_threshold
        self.min_rows = min_rows
        self.history = history
        self.warmup = warmup
        self.min_spread = min_spread
        self.max_keys = max_keys
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[str, _VolumeState] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """How many datasets currently hold learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "VolumeSpikeDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, DataChangeEvent) or event.rows < 0:
            return None
        state = lru_get(self._states, event.dataset, self.max_keys, lambda: _VolumeState(deque(maxlen=self.history)))
        if state.alarmed_version == event.version:
            return None  # the same flagged change delivered again
        value = math.log1p(event.rows)
        if len(state.log_rows) >= self.warmup:
            median = statistics.median(state.log_rows)
            spread = max(_MAD_TO_SIGMA * statistics.median(abs(v - median) for v in state.log_rows), self.min_spread)
            z = (value - median) / spread
            ratio = (event.rows + 1) / math.exp(median)
            if event.rows >= self.min_rows and ratio >= self.min_ratio and z >= self.z_threshold:
                state.alarmed_version = event.version
                return self._finding(event, state, math.expm1(median), ratio, z)
        state.log_rows.append(value)
        return None

    def _finding(self, event: DataChangeEvent, state: _VolumeState, median: float, ratio: float,
                 z: float) -> Finding:
        low, high = (math.expm1(min(state.log_rows)), math.expm1(max(state.log_rows)))
        evidence = {
            "version": event.version,
            "rows": str(event.rows),
            "baseline_median_rows": f"{median:.0f}",
            "baseline_range_rows": f"{low:.0f}-{high:.0f}",
            "baseline_changes": str(len(state.log_rows)),
            "ratio_to_median": f"{ratio:.2f}",
            "robust_z": f"{z:.1f}",
            **_who(event),
        }
        summary = (
            f"Dataset {event.dataset} version {event.version} ({event.change} at {_iso(event.ts)}) from source "
            f"{event.source} by {event.actor}{_approval(event)} carries {event.rows} rows, {ratio:.1f}x the "
            f"median of its last {len(state.log_rows)} changes ({median:.0f} rows, range {low:.0f}-{high:.0f}; "
            f"robust z={z:.1f}). A bulk injection can swamp the training data of {_consumers(event)}. "
            f"Freeze the dataset at the previous version and confirm the volume with {event.actor}."
        )
        return _finding(self.kind, self.name, event, ratio, self.min_ratio,
                        min(1.0, 0.3 + 0.2 * math.log2(ratio)), summary, evidence)


@dataclass
class _LineageState:
    sources: OrderedDict[str, None] = field(default_factory=OrderedDict)
    changes: int = 0
    alarmed_version: str | None = None


@register("unapproved_change")
class UnapprovedChangeDetector:
    """Finds self-approved changes, unapproved changes to impactful datasets, and changes from new sources.

    Example: appends to ``transactions`` (read by ``fraud-model``, marked high impact) are
    approved by a data steward; change 8 has no approval and comes from a new source, and
    change 15 is approved by its own actor.

    >>> from dataclasses import replace
    >>> from detectors._testing import data_change_stream
    >>> events = data_change_stream(seed=11, n=20, poison_at=8)
    >>> events[15] = replace(events[15], approved_by=events[15].actor)
    >>> detector = UnapprovedChangeDetector(high_impact_models=frozenset({"fraud-model"}))
    >>> [(i, f.kind, f.evidence["check"]) for i, e in enumerate(events) if (f := detector.update(e))]
    [(8, 'unapproved_change', 'no_approval+new_source'), (15, 'unapproved_change', 'self_approved')]
    """

    name: ClassVar[str] = "unapproved_change"
    event_types: ClassVar[tuple[type, ...]] = (DataChangeEvent,)
    kind: ClassVar[str] = "unapproved_change"
    source_kind: ClassVar[str] = "provenance_mismatch"

    def __init__(
        self,
        high_impact_datasets: frozenset[str] = frozenset(),
        high_impact_prefixes: tuple[str, ...] = (),
        high_impact_models: frozenset[str] = frozenset(),
        source_warmup: int = 5,
        max_sources: int = 64,
        max_keys: int = 100_000,
        consumed_is_impactful: bool = True,
    ) -> None:
        self.high_impact_datasets = high_impact_datasets
        self.high_impact_prefixes = high_impact_prefixes
        self.high_impact_models = high_impact_models
        self.source_warmup = source_warmup
        self.max_sources = max_sources
        self.max_keys = max_keys
        self.consumed_is_impactful = consumed_is_impactful
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[str, _LineageState] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """How many datasets currently hold learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "UnapprovedChangeDetector":
        return fresh_copy(self)

    def high_impact_reason(self, event: DataChangeEvent) -> str | None:
        """Why the dataset is high impact (configured, or read by high-impact models), or ``None``."""
        if event.dataset in self.high_impact_datasets or any(
            event.dataset.startswith(prefix) for prefix in self.high_impact_prefixes
        ):
            return f"dataset {event.dataset} is marked high impact"
        models = sorted(set(event.consumers) & self.high_impact_models)
        return f"it trains high-impact model(s) {', '.join(models)}" if models else None

    def approval_reason(self, event: DataChangeEvent, approval: str) -> tuple[str, float] | None:
        """Why ``approval`` (the change's approval problem) matters here, with the finding's base strength."""
        high = self.high_impact_reason(event)
        if high is not None:
            return high, 0.9
        if event.consumers and (self.consumed_is_impactful or approval == "self_approved"):
            return f"it trains model(s) {', '.join(event.consumers)}", 0.8
        if approval == "self_approved":
            return "self-approval defeats independent review", 0.6
        return None

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, DataChangeEvent):
            return None
        state = lru_get(self._states, event.dataset, self.max_keys, _LineageState)
        if state.alarmed_version == event.version:
            return None  # the same flagged change delivered again
        new_source = state.changes >= self.source_warmup and event.source not in state.sources
        approval = _approval_problem(event)
        reason = self.approval_reason(event, approval) if approval else None
        self._learn(state, event.source)
        if reason is None and not new_source:
            return None
        state.alarmed_version = event.version
        if reason is not None and approval is not None:
            return self._unapproved(event, state, approval, reason, new_source)
        return self._new_source(event, state)

    def _learn(self, state: _LineageState, source: str) -> None:
        state.changes += 1
        state.sources[source] = None
        state.sources.move_to_end(source)
        while len(state.sources) > self.max_sources:
            state.sources.popitem(last=False)

    def _unapproved(self, event: DataChangeEvent, state: _LineageState, approval: str,
                    reason_strength: tuple[str, float], new_source: bool) -> Finding:
        reason, base = reason_strength
        check = approval + ("+new_source" if new_source else "")
        what = "has no approval" if approval == "no_approval" else f"was approved by its own actor {event.actor}"
        source_note = f", a source never seen in its {state.changes - 1} earlier changes" if new_source else ""
        summary = (
            f"Dataset {event.dataset} version {event.version} ({event.change} of {event.rows} rows at "
            f"{_iso(event.ts)}) by {event.actor} from source {event.source}{source_note} {what}, and {reason}. "
            f"Unreviewed data can poison {_consumers(event)} at the next retraining. Freeze the dataset at the "
            f"previous version and have an independent approver review the change."
        )
        evidence = {"check": check, "high_impact_because": reason, "impact": _impact(base),
                    "new_source": str(new_source).lower(),
                    "known_sources": ",".join(state.sources), "baseline_changes": str(state.changes - 1),
                    **_who(event)}
        strength = min(1.0, base + 0.1) if new_source else base
        return _finding(self.kind, self.name, event, strength, base, strength, summary, evidence)

    def _new_source(self, event: DataChangeEvent, state: _LineageState) -> Finding:
        known = [source for source in state.sources if source != event.source]
        summary = (
            f"Dataset {event.dataset} version {event.version} ({event.change} of {event.rows} rows at "
            f"{_iso(event.ts)}) by {event.actor}{_approval(event)} comes from source {event.source}, never seen in "
            f"its {state.changes - 1} earlier changes (known sources: {', '.join(known) or 'none'}). Data from an "
            f"unvetted origin can poison {_consumers(event)}. Confirm the source with the dataset owner before "
            f"the next retraining."
        )
        evidence = {"check": "new_source", "known_sources": ",".join(known), "baseline_changes": str(state.changes - 1),
                    "new_source": "true", **_who(event)}
        strength = 0.5 if _approval_problem(event) is None else 0.7
        return _finding(self.source_kind, self.name, event, strength, 0.5, strength, summary, evidence)


def _impact(base_strength: float) -> str:
    return {0.9: "high", 0.8: "consumed"}.get(base_strength, "none")


def _approval_problem(event: DataChangeEvent) -> str | None:
    if not event.approved_by:
        return "no_approval"
    if event.approved_by == event.actor:
        return "self_approved"
    return None


def _finding(kind: str, detector: str, event: DataChangeEvent, score: float, threshold: float, strength: float,
             summary: str, evidence: dict[str, str]) -> Finding:
    return Finding(
        kind=kind,
        detector=detector,
        ts=event.ts,
        window_start=event.ts,
        window_end=event.ts,
        score=score,
        threshold=threshold,
        strength=strength,
        summary=summary,
        dataset=event.dataset,
        evidence=evidence,
        recommended_actions=(
            f"Freeze dataset {event.dataset} at the version before {event.version}",
            f"Pause retraining of {_consumers(event)}",
            f"Review version {event.version} with {event.actor}, the owner of source {event.source} and an "
            f"independent approver",
        ),
    )


def _who(event: DataChangeEvent) -> dict[str, str]:
    return {"version": event.version, "source": event.source, "actor": event.actor,
            "approved_by": event.approved_by or "", "change": event.change, "rows": str(event.rows),
            "consumers": ",".join(event.consumers)}


def _approval(event: DataChangeEvent) -> str:
    return f" (approved by {event.approved_by})" if event.approved_by else " (no approval recorded)"


def _consumers(event: DataChangeEvent) -> str:
    return ", ".join(event.consumers) or "models that read it"


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
