"""Label shift: a change to a training dataset brings a label mix unlike the dataset's history.

Each dataset's baseline is the running label counts of its accepted changes (River
``stats.Sum`` per label), and so is each (dataset, source) pair's. A change from a source
with ``warmup`` accepted changes of its own is judged against that source's history (so a
dataset fed by sources with different label mixes is not flagged for the mix of one of
them, and a source that changes its mix is caught even if the pooled mix hides it);
a change from a new or young source is judged against the whole dataset's history (a
flagged one still counts towards the source's own history, never the dataset's).
The change is compared with its baseline by total-variation
distance (how much of the mix moved) and a G-test (how sure, given the rows): it is a
finding when both say so, after a warm-up of accepted changes. Two gates:

* a large shift: TVD at least ``tvd_threshold`` and p below ``p_threshold``;
* a small shift on a big change: TVD at least ``small_tvd_threshold``, p below the much
  stricter ``small_p_threshold``, at least ``small_min_rows`` rows, and the moved label's
  share at least ``spread_k`` standard deviations of its own change-to-change spread away
  from the baseline (once ``spread_warmup`` changes are known). The spread gate is
  needed because real batches differ more than sampling explains (a batch is not a
  random sample of one population): on a 5,000-row append the G-test alone calls a
  healthy batch-to-batch wobble of a few points astronomically significant. A flagged change is
never learned into the baseline, so poison does not become the new normal.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar, Mapping

from river import stats

from detectors._lru import lru_get
from detectors.base import fresh_copy, register
from detectors.events import DataChangeEvent, Event
from detectors.findings import Finding

OTHER_LABEL = "__other__"


@dataclass
class _DatasetState:
    label_sums: dict[str, stats.Sum] = field(default_factory=dict)
    shares: dict[str, stats.Var] = field(default_factory=dict)  # spread of each label's share per change
    changes: int = 0
    rows: float = 0.0
    alarmed_version: str | None = None


@dataclass(frozen=True)
class _Comparison:
    """A change's label mix against its dataset's baseline."""

    baseline: dict[str, float]
    recent: dict[str, float]
    rows: int
    tvd: float
    g_statistic: float
    p_value: float


@register("label_shift")
class LabelShiftDetector:
    """Finds a dataset change whose label proportions are far from the dataset's history.

    Example: hourly appends to ``transactions`` with 5% fraud labels; change 8 arrives with
    30% fraud from an unapproved partner feed and is caught on arrival.

    >>> from detectors._testing import data_change_stream
    >>> events = data_change_stream(seed=11, n=20, poison_at=8)
    >>> detector = LabelShiftDetector()
    >>> found = [(i, f.kind, f.evidence["version"]) for i, e in enumerate(events) if (f := detector.update(e))]
    >>> found
    [(8, 'label_shift', 'v9')]
    """

    name: ClassVar[str] = "label_shift"
    event_types: ClassVar[tuple[type, ...]] = (DataChangeEvent,)
    kind: ClassVar[str] = "label_shift"

    def __init__(
        self,
        tvd_threshold: float = 0.15,
        p_threshold: float = 1e-6,
        min_rows: int = 100,
        warmup: int = 3,
        max_labels: int = 1_000,
        max_keys: int = 100_000,
        small_tvd_threshold: float = 0.05,
        small_p_threshold: float = 1e-12,
        small_min_rows: int = 1_000,
        spread_k: float = 5.0,
        spread_warmup: int = 10,
    ) -> None:
        self.tvd_threshold = tvd_threshold
        self.p_threshold = p_threshold
        self.min_rows = min_rows
        self.warmup = warmup
        self.max_labels = max_labels
        self.max_keys = max_keys
        self.small_tvd_threshold = small_tvd_threshold
        self.small_p_threshold = small_p_threshold
        self.small_min_rows = small_min_rows
        self.spread_k = spread_k
        self.spread_warmup = spread_warmup
        self._reset()

    def _reset(self) -> None:
        # (dataset, None) is the whole dataset; (dataset, source) one of its sources. One LRU budget.
        self._states: OrderedDict[tuple[str, str | None], _DatasetState] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """How many datasets and (dataset, source) pairs hold learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "LabelShiftDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, DataChangeEvent):
            return None
        counts = {label: count for label, count in event.label_counts.items() if count > 0}
        if not counts:
            return None
        state = self._state_for((event.dataset, None))
        if state.alarmed_version == event.version:
            return None  # the same flagged change delivered again
        source = self._state_for((event.dataset, event.source))
        reference, baseline = (source, "source") if source.changes >= self.warmup else (state, "dataset")
        comparison = self._compare(reference, counts) if reference.changes >= self.warmup else None
        if comparison is not None and self._is_shift(reference, comparison):
            state.alarmed_version = event.version
            if baseline == "dataset":
                # A young source odd against the dataset is flagged, and builds its own history so
                # that after ``warmup`` changes it is judged on its own (at most ``warmup`` findings).
                self._learn(source, counts)
            return self._finding(event, reference, comparison, baseline)
        self._learn(state, counts)
        self._learn(source, counts)
        return None

    def _state_for(self, key: tuple[str, str | None]) -> _DatasetState:
        return lru_get(self._states, key, self.max_keys, _DatasetState)

    def _learn(self, state: _DatasetState, counts: Mapping[str, int]) -> None:
        for label, count in counts.items():
            if label not in state.label_sums and len(state.label_sums) >= self.max_labels:
                label = OTHER_LABEL  # bounded labels per dataset; the tail shares one bin
            state.label_sums.setdefault(label, stats.Sum()).update(count)
        rows = sum(counts.values())
        for label in state.label_sums:
            if label in state.shares or len(state.shares) < self.max_labels:
                state.shares.setdefault(label, stats.Var()).update(counts.get(label, 0) / rows)
        state.changes += 1
        state.rows += rows

    def _compare(self, state: _DatasetState, counts: Mapping[str, int]) -> _Comparison:
        observed = _fold(counts, state.label_sums, self.max_labels)
        labels = sorted(set(observed) | set(state.label_sums))
        baseline = _smoothed({label: state.label_sums[label].get() if label in state.label_sums else 0.0
                              for label in labels})
        rows = sum(observed.values())
        recent = {label: observed.get(label, 0) / rows for label in labels}
        tvd = 0.5 * sum(abs(recent[label] - baseline[label]) for label in labels)
        g_statistic = _g_statistic(observed, baseline, rows)
        p_value = chi2_sf(g_statistic, max(len(labels) - 1, 1))
        return _Comparison(baseline, recent, rows, tvd, g_statistic, p_value)

    def _is_shift(self, state: _DatasetState, comparison: _Comparison) -> bool:
        if comparison.rows < self.min_rows:
            return False
        if comparison.tvd >= self.tvd_threshold and comparison.p_value < self.p_threshold:
            return True
        return (
            comparison.rows >= self.small_min_rows
            and comparison.tvd >= self.small_tvd_threshold
            and comparison.p_value < self.small_p_threshold
            and state.changes >= self.spread_warmup
            and _spread_z(state, comparison) >= self.spread_k
        )

    def _finding(self, event: DataChangeEvent, state: _DatasetState, comparison: _Comparison,
                 baseline: str) -> Finding:
        return Finding(
            kind=self.kind,
            detector=self.name,
            ts=event.ts,
            window_start=event.ts,
            window_end=event.ts,
            score=comparison.tvd,
            threshold=self.tvd_threshold,
            strength=min(1.0, comparison.tvd / (2 * self.tvd_threshold)),
            summary=_summary(event, state, comparison, baseline),
            dataset=event.dataset,
            evidence={**_evidence(event, state, comparison), "baseline": baseline},
            recommended_actions=(
                f"Freeze dataset {event.dataset} at the version before {event.version}",
                "Pause retraining of " + (", ".join(event.consumers) or "models that read it"),
                f"Ask {event.actor} and the owner of source {event.source} to explain the new labels",
            ),
        )


def _spread_z(state: _DatasetState, comparison: _Comparison) -> float:
    """How many of its own change-to-change standard deviations the most-moved label's share moved."""
    label = _top_labels(comparison, 1)[0]
    spread = state.shares.get(label)
    sd = math.sqrt(spread.get()) if spread is not None else 0.0
    moved = abs(comparison.recent[label] - comparison.baseline[label])
    return moved / sd if sd > 0 else math.inf


def _fold(counts: Mapping[str, int], known: Mapping[str, object], max_labels: int) -> dict[str, int]:
    """``counts`` with labels beyond the baseline's bounded label set folded into ``OTHER_LABEL``."""
    if len(known) < max_labels:
        return dict(counts)
    folded: dict[str, int] = {}
    for label, count in counts.items():
        key = label if label in known else OTHER_LABEL
        folded[key] = folded.get(key, 0) + count
    return folded


def _smoothed(totals: Mapping[str, float]) -> dict[str, float]:
    """Proportions with half a pseudo-count per label, so an unseen label is unlikely, not impossible."""
    total = sum(totals.values()) + 0.5 * len(totals)
    return {label: (count + 0.5) / total for label, count in totals.items()}


def _g_statistic(observed: Mapping[str, int], expected: Mapping[str, float], rows: int) -> float:
    """G = 2 * sum(o * ln(o / e)) of observed counts against expected proportions."""
    return 2.0 * sum(
        count * math.log(count / (rows * expected[label])) for label, count in observed.items() if count > 0
    )


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for a chi-square variable with ``df`` degrees of freedom (no scipy).

    >>> round(chi2_sf(3.841458820694124, 1), 6)
    0.05
    >>> chi2_sf(200.0, 2) < 1e-40
    True
    """
    if x <= 0:
        return 1.0
    return _gamma_q(df / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x): series below a+1, continued fraction above."""
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        shape = a
        for _ in range(1_000):
            shape += 1.0
            term *= x / shape
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    return _gamma_q_fraction(a, x, log_prefix)


def _gamma_q_fraction(a: float, x: float, log_prefix: float) -> float:
    # Lentz's method for the continued fraction of Q(a, x).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for step in range(1, 1_000):
        an = -step * (step - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_prefix) * h


def _top_labels(comparison: _Comparison, limit: int = 5) -> list[str]:
    moved = sorted(comparison.baseline, key=lambda label: -abs(comparison.recent[label] - comparison.baseline[label]))
    return moved[:limit]


def _mix(proportions: Mapping[str, float], labels: list[str]) -> str:
    return ",".join(f"{label}={proportions[label]:.4f}" for label in labels)


def _evidence(event: DataChangeEvent, state: _DatasetState, comparison: _Comparison) -> dict[str, str]:
    labels = _top_labels(comparison)
    return {
        "baseline_proportions": _mix(comparison.baseline, labels),
        "new_proportions": _mix(comparison.recent, labels),
        "tvd": f"{comparison.tvd:.4f}",
        "g_statistic": f"{comparison.g_statistic:.2f}",
        "p_value": f"{comparison.p_value:.3g}",
        "spread_z": f"{min(_spread_z(state, comparison), 1e9):.1f}",
        "rows": str(comparison.rows),
        "baseline_rows": str(int(state.rows)),
        "baseline_changes": str(state.changes),
        "source": event.source,
        "actor": event.actor,
        "approved_by": event.approved_by or "",
        "version": event.version,
        "change": event.change,
        "consumers": ",".join(event.consumers),
    }


def _summary(event: DataChangeEvent, state: _DatasetState, comparison: _Comparison, baseline: str) -> str:
    moved = ", ".join(
        f"{label} {comparison.baseline[label]:.1%} -> {comparison.recent[label]:.1%}"
        for label in _top_labels(comparison, 3)
    )
    when = datetime.fromtimestamp(event.ts / 1000, tz=timezone.utc).isoformat(timespec="seconds")
    approval = f"approved by {event.approved_by}" if event.approved_by else "with no approval"
    consumers = ", ".join(event.consumers) or "no registered models"
    history = f"from source {event.source}" if baseline == "source" else "of the whole dataset"
    return (
        f"Dataset {event.dataset} version {event.version} ({event.change} of {comparison.rows} rows at {when}) "
        f"from source {event.source} by {event.actor}, {approval}, has a label mix unlike the last "
        f"{state.changes} changes ({int(state.rows)} rows) {history}: {moved}; total-variation distance "
        f"{comparison.tvd:.3f}, G-test p={comparison.p_value:.2g}. Models trained on it: {consumers}. "
        f"Freeze the dataset and pause their retraining until the labels are verified."
    )
