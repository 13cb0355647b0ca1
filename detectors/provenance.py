"""Provenance: a dataset change whose content is not what it claims to be.

Two checks on every ``DataChangeEvent``: the content hash differs from the hash the
publisher expected (the bytes were altered between approval and landing), or the same
content hash already appeared as a different version of the same dataset (an old
snapshot replayed as new, or a version label forged). The hash memory is a bounded LRU.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from datetime import datetime, timezone
from typing import ClassVar

from detectors.base import fresh_copy, register
from detectors.events import DataChangeEvent, Event
from detectors.findings import Finding


@register("provenance")
class ProvenanceDetector:
    """Finds dataset changes whose content hash contradicts the expected hash or an earlier version.

    Example: 20 appends with correct hashes; change 5 lands with bytes that do not match its
    expected hash, and change 12 re-uses the content hash of version v3.

    >>> from dataclasses import replace
    >>> from detectors._testing import data_change_stream
    >>> events = data_change_stream(seed=5, n=20)
    >>> events[5] = replace(events[5], expected_hash="sha256:approved")
    >>> events[12] = replace(events[12], content_hash=events[2].content_hash)
    >>> detector = ProvenanceDetector()
    >>> found = [(i, f.kind, f.evidence["check"]) for i, e in enumerate(events) if (f := detector.update(e))]
    >>> found
    [(5, 'provenance_mismatch', 'expected_hash'), (12, 'provenance_mismatch', 'hash_reuse')]
    """

    name: ClassVar[str] = "provenance"
    event_types: ClassVar[tuple[type, ...]] = (DataChangeEvent,)
    kind: ClassVar[str] = "provenance_mismatch"

    def __init__(self, reuse_strength: float = 0.8, max_keys: int = 100_000) -> None:
        self.reuse_strength = reuse_strength
        self.max_keys = max_keys
        self._reset()

    def _reset(self) -> None:
        # content hash -> (dataset, version) of its first sighting
        self._seen: OrderedDict[str, tuple[str, str]] = OrderedDict()

    @property
    def n_tracked_keys(self) -> int:
        """How many content hashes are remembered (never above ``max_keys``)."""
        return len(self._seen)

    def clone(self) -> "ProvenanceDetector":
        return fresh_copy(self)

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, DataChangeEvent):
            return None
        earlier = self._remember(event)
        if event.expected_hash and event.expected_hash != event.content_hash:
            return self._mismatch(event)
        if earlier is not None and earlier[0] == event.dataset and earlier[1] != event.version:
            return self._reuse(event, earlier[1])
        return None

    def _remember(self, event: DataChangeEvent) -> tuple[str, str] | None:
        """The first (dataset, version) seen with this content hash; records this one if new."""
        if not event.content_hash:
            return None
        earlier = self._seen.get(event.content_hash)
        if earlier is None:
            self._seen[event.content_hash] = (event.dataset, event.version)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(event.content_hash)
        return earlier

    def _mismatch(self, event: DataChangeEvent) -> Finding:
        summary = (
            f"Dataset {event.dataset} version {event.version} ({event.change} of {event.rows} rows at "
            f"{_iso(event.ts)}) from source {event.source} by {event.actor} has content hash "
            f"{event.content_hash or '(none)'} but {event.expected_hash} was expected: the data changed after "
            f"it was approved{_approval(event)}. Freeze the dataset and pause retraining of "
            f"{_consumers(event)} until the content is re-verified."
        )
        return self._finding(event, "expected_hash", 1.0, summary)

    def _reuse(self, event: DataChangeEvent, earlier_version: str) -> Finding:
        summary = (
            f"Dataset {event.dataset} version {event.version} (at {_iso(event.ts)}, source {event.source}, "
            f"actor {event.actor}) carries content hash {event.content_hash}, already seen as version "
            f"{earlier_version}: an old snapshot is being passed off as a new version{_approval(event)}. "
            f"Freeze the dataset and pause retraining of {_consumers(event)} until the lineage is explained."
        )
        finding = self._finding(event, "hash_reuse", self.reuse_strength, summary)
        return _with(finding, earlier_version=earlier_version)

    def _finding(self, event: DataChangeEvent, check: str, strength: float, summary: str) -> Finding:
        evidence = {
            "check": check,
            "content_hash": event.content_hash,
            "expected_hash": event.expected_hash or "",
            "version": event.version,
            "actor": event.actor,
            "source": event.source,
            "approved_by": event.approved_by or "",
            "rows": str(event.rows),
            "consumers": ",".join(event.consumers),
        }
        return Finding(
            kind=self.kind,
            detector=self.name,
            ts=event.ts,
            window_start=event.ts,
            window_end=event.ts,
            score=strength,
            threshold=strength,
            strength=strength,
            summary=summary,
            dataset=event.dataset,
            evidence=evidence,
            recommended_actions=(
                f"Freeze dataset {event.dataset} at the last verified version",
                f"Pause retraining of {_consumers(event)}",
                f"Re-verify version {event.version} with {event.actor} and source {event.source}",
            ),
        )


def _with(finding: Finding, **extra: str) -> Finding:
    return replace(finding, evidence={**finding.evidence, **extra})


def _approval(event: DataChangeEvent) -> str:
    return f" (approved by {event.approved_by})" if event.approved_by else " (no approval recorded)"


def _consumers(event: DataChangeEvent) -> str:
    return ", ".join(event.consumers) or "models that read it"


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
