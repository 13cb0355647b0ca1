"""Containment policy: which safe, reversible, time-limited commands an incident earns.

Pure decision logic; the containment publisher in ``streams`` only delivers the result.
Every command defaults to ``dry_run`` until an operator switches the mode to ``enforce``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from detectors.findings import SEVERITIES, ContainmentCommand, Incident, stable_digest

CONTAINMENT_ACTIONS = (
    "throttle",
    "force_reauth",
    "rollback_model",
    "hold_for_review",
    "freeze_dataset",
    "pause_retraining",
    "revert",
)

#: kind -> ordered (action, target_type) steps. Targets come from the incident's subject.
DEFAULT_PLAYBOOK: Mapping[str, tuple[tuple[str, str], ...]] = {
    "download_burst": (("throttle", "principal"), ("force_reauth", "principal")),
    "query_burst": (("throttle", "principal"),),
    "unusual_access": (("force_reauth", "principal"),),
    "input_anomaly": (("throttle", "principal"),),
    "prediction_drift": (("hold_for_review", "model"),),
    "feature_drift": (("hold_for_review", "model"),),
    "concept_drift": (("hold_for_review", "model"),),
    "segment_degradation": (("hold_for_review", "model"),),
    "canary_regression": (("rollback_model", "model"),),
    "label_shift": (("freeze_dataset", "dataset"), ("pause_retraining", "dataset")),
    "unapproved_change": (("freeze_dataset", "dataset"),),
    "provenance_mismatch": (("freeze_dataset", "dataset"), ("pause_retraining", "dataset")),
    "volume_spike": (("freeze_dataset", "dataset"),),
}

_ACTION_WORDS = {
    "throttle": "throttle",
    "force_reauth": "force re-authentication of",
    "rollback_model": "roll back",
    "hold_for_review": "hold automated decisions for human review from",
    "freeze_dataset": "freeze",
    "pause_retraining": "pause retraining on",
}


@dataclass(frozen=True)
class ContainmentPolicy:
    """Maps an incident to commands.

    ``min_severity`` gates everything; ``mode`` is ``dry_run`` unless an operator says
    ``enforce``; ``kill_switch`` forces ``dry_run`` whatever the mode; ``ttl_ms`` bounds
    every command's life; principals in ``allow_list`` are never throttled or re-authed.
    """

    mode: str = "dry_run"
    min_severity: str = "medium"
    ttl_ms: int = 3_600_000
    kill_switch: bool = False
    allow_list: frozenset[str] = frozenset()
    playbook: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=lambda: dict(DEFAULT_PLAYBOOK))

    def __post_init__(self) -> None:
        if self.mode not in ("dry_run", "enforce"):
            raise ValueError(f"containment mode must be dry_run or enforce, not {self.mode!r}")
        if self.min_severity not in SEVERITIES:
            raise ValueError(f"min_severity must be one of {SEVERITIES}, not {self.min_severity!r}")

    def commands_for(self, incident: Incident) -> list[ContainmentCommand]:
        """The commands ``incident`` earns under this policy (possibly none)."""
        if SEVERITIES.index(incident.severity) < SEVERITIES.index(self.min_severity):
            return []
        mode = "dry_run" if self.kill_switch else self.mode
        commands = []
        for action, target_type in self.playbook.get(incident.kind, ()):
            target = _target_of(incident, target_type)
            if target is None:
                continue
            if target_type == "principal" and target in self.allow_list:
                continue
            commands.append(self._command(incident, action, target_type, target, mode))
        return commands

    def _command(
        self, incident: Incident, action: str, target_type: str, target: str, mode: str
    ) -> ContainmentCommand:
        reason = (
            f"{_ACTION_WORDS.get(action, action)} {target_type} {target} because of "
            f"{incident.severity} {incident.kind.replace('_', ' ')} (incident {incident.incident_id}); "
            f"expires automatically after {self.ttl_ms // 60_000} min; reversible with a revert command."
        )
        return ContainmentCommand(
            command_id=stable_digest("cmd", incident.incident_id, action, target_type, target),
            incident_id=incident.incident_id,
            issued_at=incident.detected_at,
            action=action,
            target_type=target_type,
            target=target,
            params={"severity": incident.severity, "kind": incident.kind},
            mode=mode,
            expires_at=incident.detected_at + self.ttl_ms,
            reversible=True,
            reason=reason,
        )


def _target_of(incident: Incident, target_type: str) -> str | None:
    if target_type == "principal":
        return incident.principal
    if target_type == "dataset":
        return incident.dataset
    if target_type == "model":
        if incident.model_id is None:
            return None
        return f"{incident.model_id}:{incident.model_version}" if incident.model_version else incident.model_id
    return None
