"""Ground truth: what was injected, where, and which incidents count as catching it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: Incident kinds grouped by the threat they describe; an incident of any kind in the
#: attack's family, about the attack's subject, catches it.
KIND_FAMILIES: Mapping[str, str] = {
    "prediction_drift": "model_quality",
    "feature_drift": "model_quality",
    "concept_drift": "model_quality",
    "segment_degradation": "model_quality",
    "canary_regression": "model_quality",
    "input_anomaly": "misuse",
    "query_burst": "misuse",
    "download_burst": "theft",
    "unusual_access": "theft",
    "label_shift": "poisoning",
    "volume_spike": "poisoning",
    "unapproved_change": "poisoning",
    "provenance_mismatch": "poisoning",
}

SUBJECT_FIELDS = ("model_id", "model_version", "segment", "principal", "resource", "dataset")
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def family_of(kind: str) -> str:
    """The threat family of an incident kind (an unknown kind is its own family)."""
    return KIND_FAMILIES.get(kind, kind)


@dataclass(frozen=True)
class Attack:
    """One injected attack: the incident ``kind`` it should raise about ``subject``.

    ``subject`` holds the incident fields that must agree (``model_id``, ``model_version``,
    ``segment``, ``principal``, ``resource``, ``dataset``). An incident counts as a detection
    when it lands in ``[start_ts, start_ts + max_delay_ms]``. ``collateral`` lists
    ``(kind, subject)`` pairs the attack legitimately disturbs too (an extraction sweep shifts
    the model's scores), and ``aftermath_ms`` how long after ``end_ts`` same-family incidents
    about the subject are late consequences (shifted scores make more errors, which labels
    reveal later): incidents of either sort are neither detections nor false alarms.
    """

    attack_id: str
    kind: str
    start_ts: int
    end_ts: int
    subject: Mapping[str, Any]
    shape: str = "abrupt"  # abrupt | gradual
    size: str = "large"  # small | large
    max_delay_ms: int = 30 * MINUTE_MS
    description: str = ""
    collateral: tuple[tuple[str, Mapping[str, Any]], ...] = field(default=())
    aftermath_ms: int = 0

    @property
    def deadline_ts(self) -> int:
        return self.start_ts + self.max_delay_ms

    def to_record(self) -> dict[str, Any]:
        return {
            "attack_id": self.attack_id, "kind": self.kind, "start_ts": self.start_ts, "end_ts": self.end_ts,
            "subject": dict(self.subject), "shape": self.shape, "size": self.size,
            "max_delay_ms": self.max_delay_ms, "description": self.description,
        }


@dataclass(frozen=True)
class Alarm:
    """An incident (ours) or a peer alarm, reduced to what matching needs.

    ``position`` is the index in the scenario stream of the event that raised it.
    """

    source: str
    kind: str
    ts: int
    position: int
    subject: Mapping[str, Any]


def alarm_from_incident(source: str, incident_record: Mapping[str, Any], position: int) -> Alarm:
    """An ``Alarm`` from an incident record (``Incident.to_record()`` shape)."""
    subject = {name: incident_record.get(name) for name in SUBJECT_FIELDS if incident_record.get(name)}
    return Alarm(source, incident_record["kind"], int(incident_record["detected_at"]), position, subject)
