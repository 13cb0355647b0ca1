"""What detectors say (``Finding``) and what the engine publishes (``Incident``).

A detector returns a ``Finding`` when it is sure enough that something changed. The
engine turns findings into ``Incident`` records (the public contract in
``schemas/incident.avsc``) with a deterministic ``incident_id``, so replaying the same
events yields the same ids and duplicate rows collapse downstream.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

INCIDENT_KINDS = (
    "feature_drift",
    "prediction_drift",
    "concept_drift",
    "segment_degradation",
    "input_anomaly",
    "download_burst",
    "query_burst",
    "unusual_access",
    "label_shift",
    "unapproved_change",
    "provenance_mismatch",
    "volume_spike",
    "canary_regression",
)
SEVERITIES = ("info", "low", "medium", "high", "critical")
STATUSES = ("open", "contained", "resolved")


def stable_digest(*parts: object, length: int = 24) -> str:
    """A process-independent hex digest of ``parts`` (never Python's salted ``hash()``)."""
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def segment_key(segment: Mapping[str, str] | None) -> str:
    """Canonical text form of a segment, e.g. ``device=android,region=EU`` (sorted)."""
    if not segment:
        return ""
    return ",".join(f"{name}={segment[name]}" for name in sorted(segment))


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector's verdict that something changed, with the numbers that explain it.

    ``strength`` in [0, 1] says how far past the threshold the signal is; the engine maps
    it to a severity. ``window_start`` is the detector's best estimate of when the change
    began (event time, ms); together with ``detector`` and the subject it fixes the
    incident id.
    """

    kind: str
    detector: str
    ts: int
    window_start: int
    window_end: int
    score: float
    threshold: float
    strength: float
    summary: str
    model_id: str | None = None
    model_version: str | None = None
    segment: Mapping[str, str] | None = None
    principal: str | None = None
    resource: str | None = None
    dataset: str | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)
    recommended_actions: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        """What the finding is about, as one canonical string (used for ids and dedup)."""
        return "|".join(
            (
                self.model_id or "",
                self.model_version or "",
                segment_key(self.segment),
                self.principal or "",
                self.resource or "",
                self.dataset or "",
            )
        )


def severity_for(strength: float) -> str:
    """Map a detector strength in [0, 1] to a severity name."""
    if strength >= 0.9:
        return "critical"
    if strength >= 0.7:
        return "high"
    if strength >= 0.4:
        return "medium"
    if strength >= 0.2:
        return "low"
    return "info"


@dataclass(frozen=True, slots=True)
class Incident:
    """The public incident record (fields match ``schemas/incident.avsc``)."""

    incident_id: str
    kind: str
    severity: str
    detected_at: int
    window_start: int
    window_end: int
    detector: str
    score: float
    threshold: float
    summary: str
    model_id: str | None = None
    model_version: str | None = None
    segment: Mapping[str, str] | None = None
    principal: str | None = None
    resource: str | None = None
    dataset: str | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)
    recommended_actions: tuple[str, ...] = ()
    status: str = "open"
    case_id: str | None = None
    updated_at: int = 0
    playbook_id: str = ""
    investigation_queries: tuple[str, ...] = ()
    affected_predictions: int = 0
    related_incidents: tuple[str, ...] = ()
    impact_tier: str = ""
    owners: tuple[str, ...] = ()
    updates: int = 0

    @classmethod
    def from_finding(cls, finding: Finding, severity: str | None = None) -> "Incident":
        """The incident for ``finding``; its id depends only on detector, subject and window."""
        return cls(
            incident_id=stable_digest(finding.detector, finding.kind, finding.subject, finding.window_start),
            kind=finding.kind,
            severity=severity or severity_for(finding.strength),
            detected_at=finding.ts,
            window_start=finding.window_start,
            window_end=finding.window_end,
            detector=finding.detector,
            score=float(finding.score),
            threshold=float(finding.threshold),
            summary=finding.summary,
            model_id=finding.model_id,
            model_version=finding.model_version,
            segment=dict(finding.segment) if finding.segment else None,
            principal=finding.principal,
            resource=finding.resource,
            dataset=finding.dataset,
            evidence=dict(finding.evidence),
            recommended_actions=tuple(finding.recommended_actions),
            updated_at=finding.ts,
        )

    def to_record(self) -> dict[str, Any]:
        """A plain dict with exactly the contract's fields (JSON and Avro ready)."""
        return {
            "incident_id": self.incident_id,
            "kind": self.kind,
            "severity": self.severity,
            "detected_at": self.detected_at,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "segment": dict(self.segment) if self.segment is not None else None,
            "principal": self.principal,
            "resource": self.resource,
            "dataset": self.dataset,
            "detector": self.detector,
            "score": self.score,
            "threshold": self.threshold,
            "evidence": dict(self.evidence),
            "summary": self.summary,
            "recommended_actions": list(self.recommended_actions),
            "status": self.status,
            "case_id": self.case_id,
            "updated_at": self.updated_at,
            "playbook_id": self.playbook_id,
            "investigation_queries": list(self.investigation_queries),
            "affected_predictions": self.affected_predictions,
            "related_incidents": list(self.related_incidents),
            "impact_tier": self.impact_tier,
            "owners": list(self.owners),
            "updates": self.updates,
        }


@dataclass(frozen=True, slots=True)
class ContainmentCommand:
    """A safe, reversible, time-limited action for responders (``schemas/containment_command.avsc``)."""

    command_id: str
    incident_id: str
    issued_at: int
    action: str
    target_type: str
    target: str
    mode: str
    expires_at: int
    reason: str
    params: Mapping[str, str] = field(default_factory=dict)
    reversible: bool = True
    revert_of: str | None = None

    def to_record(self) -> dict[str, Any]:
        """A plain dict with exactly the contract's fields."""
        return {
            "command_id": self.command_id,
            "incident_id": self.incident_id,
            "issued_at": self.issued_at,
            "action": self.action,
            "target_type": self.target_type,
            "target": self.target,
            "params": dict(self.params),
            "mode": self.mode,
            "expires_at": self.expires_at,
            "reversible": self.reversible,
            "reason": self.reason,
            "revert_of": self.revert_of,
        }
