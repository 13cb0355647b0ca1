"""Containment policy: which safe, reversible, time-limited commands an incident earns.

Pure decision logic; the containment publisher in ``streams`` only delivers the result.
Every command defaults to ``dry_run`` until an operator switches the mode to ``enforce``.

Guard rails live here too: allow-listed principals are never throttled or re-authed, a
rollback always names a known-good version and its artifact hash (no known-good version,
no rollback: decisions are held for review instead), and at most
``max_enforce_per_target_per_hour`` commands per target are enforced (the rest are issued
as ``dry_run`` and say why). Command ids are deterministic per (incident, action, target),
so a replay or restart re-issues the same ids, never new ones.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Mapping

from detectors.events import AccessEvent, Event, PredictionEvent
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
    "revert": "revert",
}
HOUR_MS = 3_600_000
ARTIFACT_HASH_KEYS = ("artifact_hash", "sha256", "hash")


@dataclass(frozen=True)
class PolicyRule:
    """(kind, severity, tier) -> actions. ``kind`` ``*`` matches every kind; empty ``tiers`` every tier.

    ``mode`` ``None`` takes the policy's mode, which is ``dry_run`` unless an operator says ``enforce``.
    """

    kind: str
    actions: tuple[tuple[str, str], ...]
    min_severity: str = "medium"
    tiers: frozenset[str] = frozenset()
    mode: str | None = None

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITIES:
            raise ValueError(f"rule for {self.kind}: min_severity must be one of {SEVERITIES}")
        if self.mode not in (None, "dry_run", "enforce"):
            raise ValueError(f"rule for {self.kind}: mode must be dry_run or enforce, not {self.mode!r}")
        unknown = [action for action, _ in self.actions if action not in CONTAINMENT_ACTIONS]
        if unknown:
            raise ValueError(f"rule for {self.kind}: unknown actions {unknown}; known: {CONTAINMENT_ACTIONS}")

    def matches(self, incident: Incident, tier: str) -> bool:
        return (
            self.kind in ("*", incident.kind)
            and SEVERITIES.index(incident.severity) >= SEVERITIES.index(self.min_severity)
            and (not self.tiers or tier in self.tiers)
        )


#: (version, artifact hash) of a model's last known-good version other than the one given, or None.
RollbackLookup = Callable[[str, "str | None"], "tuple[str, str] | None"]


@dataclass(frozen=True)
class ContainmentPolicy:
    """Maps an incident to commands.

    ``rules`` are tried in order and the first that matches (kind, severity, tier) decides
    the actions; with no rules, ``playbook`` gated by ``min_severity`` is the rule set.
    ``mode`` is ``dry_run`` unless an operator says ``enforce``; ``kill_switch`` forces
    ``dry_run`` whatever the mode; ``ttl_ms`` bounds every command's life; principals in
    ``allow_list`` are never throttled or re-authed.
    """

    mode: str = "dry_run"
    min_severity: str = "medium"
    ttl_ms: int = 3_600_000
    kill_switch: bool = False
    allow_list: frozenset[str] = frozenset()
    playbook: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=lambda: dict(DEFAULT_PLAYBOOK))
    rules: tuple[PolicyRule, ...] = ()
    max_enforce_per_target_per_hour: int = 3

    def __post_init__(self) -> None:
        if self.mode not in ("dry_run", "enforce"):
            raise ValueError(f"containment mode must be dry_run or enforce, not {self.mode!r}")
        if self.min_severity not in SEVERITIES:
            raise ValueError(f"min_severity must be one of {SEVERITIES}, not {self.min_severity!r}")

    def effective_rules(self) -> tuple[PolicyRule, ...]:
        if self.rules:
            return self.rules
        return tuple(PolicyRule(kind, steps, self.min_severity) for kind, steps in self.playbook.items())

    def rule_for(self, incident: Incident, tier: str = "medium") -> PolicyRule | None:
        return next((rule for rule in self.effective_rules() if rule.matches(incident, tier)), None)

    def commands_for(
        self, incident: Incident, tier: str = "medium", rollback: RollbackLookup | None = None
    ) -> list[ContainmentCommand]:
        """The commands ``incident`` earns under this policy (possibly none)."""
        rule = self.rule_for(incident, tier)
        if rule is None:
            return []
        mode = "dry_run" if self.kill_switch else (rule.mode or self.mode)
        commands = []
        for action, target_type in rule.actions:
            target = _target_of(incident, target_type)
            if target is None or (target_type == "principal" and target in self.allow_list):
                continue
            if action == "rollback_model":
                commands.append(self._rollback(incident, tier, mode, rollback))
            else:
                commands.append(self._command(incident, action, target_type, target, mode, tier))
        return commands

    def revert_for(self, command: ContainmentCommand, at_ms: int, why: str) -> ContainmentCommand:
        """The command undoing ``command``; its id depends only on the original, so it is issued once."""
        return ContainmentCommand(
            command_id=stable_digest("revert", command.command_id),
            incident_id=command.incident_id,
            issued_at=at_ms,
            action="revert",
            target_type=command.target_type,
            target=command.target,
            params={"reverts_action": command.action, **{k: v for k, v in command.params.items() if k != "guard"}},
            mode=command.mode,
            expires_at=at_ms + self.ttl_ms,
            reversible=False,
            reason=f"Undo {_ACTION_WORDS.get(command.action, command.action)} {command.target_type} "
                   f"{command.target} (command {command.command_id}): {why}.",
            revert_of=command.command_id,
        )

    def _rollback(self, incident: Incident, tier: str, mode: str, rollback: RollbackLookup | None) -> ContainmentCommand:
        model_id = incident.model_id or ""
        found = rollback(model_id, incident.model_version) if rollback is not None else None
        if found is None:
            note = (f"no known-good version of {model_id} with a recorded artifact hash, so no rollback "
                    f"(never roll back to an unknown version)")
            return self._command(incident, "hold_for_review", "model", _target_of(incident, "model") or model_id,
                                 mode, tier, note=note)
        version, artifact_hash = found
        note = f"target version {version} (artifact {artifact_hash}) is the last known-good version"
        params = {"from_version": incident.model_version or "", "target_version": version, "target_hash": artifact_hash}
        return self._command(incident, "rollback_model", "model", model_id, mode, tier, params=params, note=note)

    def _command(
        self, incident: Incident, action: str, target_type: str, target: str, mode: str, tier: str,
        params: Mapping[str, str] | None = None, note: str = "",
    ) -> ContainmentCommand:
        verb = _ACTION_WORDS.get(action, action)
        expires_at = incident.detected_at + self.ttl_ms
        reason = (
            f"{'Dry run (logged, not applied): would' if mode == 'dry_run' else 'Enforced:'} {verb} {target_type} "
            f"{target} because of a {incident.severity} {incident.kind.replace('_', ' ')} on a {tier}-impact asset "
            f"(incident {incident.incident_id}){'; ' + note if note else ''}. Expires at {_iso(expires_at)} "
            f"({self.ttl_ms // 60_000} min); reverted automatically when the incident resolves."
        )
        return ContainmentCommand(
            command_id=stable_digest("cmd", incident.incident_id, action, target_type, target),
            incident_id=incident.incident_id,
            issued_at=incident.detected_at,
            action=action,
            target_type=target_type,
            target=target,
            params={"severity": incident.severity, "kind": incident.kind, "tier": tier, **(params or {})},
            mode=mode,
            expires_at=expires_at,
            reversible=True,
            reason=reason,
        )


def downgrade(command: ContainmentCommand, why: str) -> ContainmentCommand:
    """``command`` issued as ``dry_run`` instead of enforced, saying why (same id: same step)."""
    return replace(command, mode="dry_run", params={**command.params, "guard": why},
                   reason=f"Dry run instead of enforce ({why}): " + command.reason)


class EnforceBudget:
    """At most ``per_hour`` enforced commands per target in any hour of event time; bounded by ``max_targets``."""

    def __init__(self, per_hour: int = 3, max_targets: int = 100_000) -> None:
        self.per_hour = per_hour
        self.max_targets = max_targets
        self._spent: OrderedDict[str, deque[int]] = OrderedDict()

    def try_spend(self, target: str, ts: int) -> bool:
        spent = self._spent.setdefault(target, deque())
        self._spent.move_to_end(target)
        while spent and spent[0] <= ts - HOUR_MS:
            spent.popleft()
        if len(spent) >= self.per_hour:
            return False
        spent.append(ts)
        while len(self._spent) > self.max_targets:
            self._spent.popitem(last=False)
        return True


@dataclass
class Deploy:
    """A model version's deploy, from an AccessEvent with action ``deploy``."""

    model_id: str
    version: str
    ts: int
    principal: str
    artifact_hash: str
    clean_predictions: int = 0
    known_good: bool = False


class ModelVersions:
    """Deploys and known-good versions per model.

    A deploy event (``AccessEvent`` action ``deploy`` on resource ``model:version``, the
    artifact hash in ``attributes['artifact_hash']``) records a version. A version becomes
    known-good after ``known_good_after`` predictions served while its model had no open
    incident. Bounded: ``max_models`` models, the last ``max_versions`` versions each.
    """

    def __init__(self, known_good_after: int = 500, max_models: int = 10_000, max_versions: int = 10) -> None:
        self.known_good_after = known_good_after
        self.max_models = max_models
        self.max_versions = max_versions
        self._models: OrderedDict[str, OrderedDict[str, Deploy]] = OrderedDict()

    def observe(self, event: Event, model_has_open_incident: Callable[[str], bool]) -> None:
        """Record a deploy, or count a clean prediction towards its version becoming known-good."""
        if isinstance(event, AccessEvent) and event.action == "deploy" and event.outcome == "success":
            self._record_deploy(event)
        elif isinstance(event, PredictionEvent) and not event.is_feedback:
            deploys = self._models.get(event.model_id)
            deploy = deploys.get(event.model_version) if deploys is not None else None
            if deploy is not None and not deploy.known_good and not model_has_open_incident(event.model_id):
                deploy.clean_predictions += 1
                deploy.known_good = deploy.clean_predictions >= self.known_good_after

    def settled(self, model_id: str) -> bool:
        """Whether a prediction of ``model_id`` can change nothing here: none of its deploys is still proving itself.

        Only a deploy event unsettles a model again.
        """
        deploys = self._models.get(model_id)
        return deploys is None or all(deploy.known_good for deploy in deploys.values())

    def deploy_of(self, model_id: str, version: str | None) -> Deploy | None:
        return self._models.get(model_id, OrderedDict()).get(version or "")

    def rollback_target(self, model_id: str, bad_version: str | None) -> tuple[str, str] | None:
        """The most recently deployed known-good version of ``model_id`` other than ``bad_version``."""
        for deploy in reversed(self._models.get(model_id, OrderedDict()).values()):
            if deploy.known_good and deploy.version != bad_version and deploy.artifact_hash:
                return deploy.version, deploy.artifact_hash
        return None

    def _record_deploy(self, event: AccessEvent) -> None:
        model_id, _, version = event.resource.partition(":")
        model_id = event.attributes.get("model_id", model_id)
        version = event.attributes.get("model_version", version)
        artifact_hash = next((event.attributes[key] for key in ARTIFACT_HASH_KEYS if event.attributes.get(key)), "")
        if not model_id or not version:
            return
        versions = self._models.setdefault(model_id, OrderedDict())
        self._models.move_to_end(model_id)
        previous = versions.pop(version, None)
        deploy = Deploy(model_id, version, event.ts, event.principal, artifact_hash)
        if previous is not None and previous.artifact_hash == artifact_hash:
            deploy.clean_predictions, deploy.known_good = previous.clean_predictions, previous.known_good
        versions[version] = deploy
        while len(versions) > self.max_versions:
            versions.popitem(last=False)
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


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
