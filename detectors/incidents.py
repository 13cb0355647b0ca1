"""Incident lifecycle: findings in, incidents (open -> updated -> resolved) and commands out.

One open incident per (kind, subject). A re-firing detector updates it (severity may only
rise, evidence accumulates, ``updated_at`` moves) instead of opening another. An incident
is resolved once its signal has been quiet for ``quiet_ms`` of event time; a finding for
the same (kind, subject) within ``cooldown_ms`` after that re-opens the same incident
rather than opening a new one. Resolution and command expiry publish ``revert`` commands.

Event time only moves through ``observe``/``handle``: the book keeps a watermark (the
highest event time seen) and sweeps at most once per ``check_every_ms`` of it, so the
cost of checking is bounded by the number of open incidents (itself bounded by
``max_open``). Every emitted incident state, command and evidence row is a pure function
of the events, so replays give identical ids.
"""

from __future__ import annotations

import math

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

from detectors.containment import ContainmentPolicy, EnforceBudget, ModelVersions, downgrade
from detectors.correlation import CaseLink, CaseLinker
from detectors.events import AccessEvent, DataChangeEvent, Event, PredictionEvent, event_type_name
from detectors.findings import SEVERITIES, ContainmentCommand, Finding, Incident, stable_digest
from detectors.impact import ImpactTiers
from detectors.playbooks import playbook_for, render_queries

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    """A raw event that touched an open incident, summarised for the evidence archive."""

    incident_id: str
    ts: int
    event_type: str
    event_id: str
    description: str
    principal: str | None = None
    model_id: str | None = None
    model_version: str | None = None
    dataset: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def to_record(self) -> dict[str, object]:
        return {
            "incident_id": self.incident_id, "ts": self.ts, "event_type": self.event_type, "event_id": self.event_id,
            "description": self.description, "principal": self.principal, "model_id": self.model_id,
            "model_version": self.model_version, "dataset": self.dataset, "attributes": dict(self.attributes),
        }


@dataclass
class EngineOutput:
    """Everything one or more events caused, in the order it was decided.

    ``incidents`` holds each incident's new state after an open, update or resolve;
    ``commands`` the containment commands and reverts; ``evidence`` the raw events that
    touched open incidents (bounded per incident).
    """

    incidents: list[Incident] = field(default_factory=list)
    commands: list[ContainmentCommand] = field(default_factory=list)
    evidence: list[EvidenceRow] = field(default_factory=list)

    def extend(self, other: "EngineOutput") -> None:
        self.incidents.extend(other.incidents)
        self.commands.extend(other.commands)
        self.evidence.extend(other.evidence)


@dataclass
class _Tracked:
    """An incident the book still remembers (open, or resolved within the cooldown)."""

    key: Key
    incident: Incident
    base_summary: str
    last_signal: int
    tier: str
    case_summary: str = ""
    active: dict[str, ContainmentCommand] = field(default_factory=dict)
    issued: set[str] = field(default_factory=set)
    evidence_rows: int = 0
    resolved_at: int | None = None
    #: Predictions served since the last emit, not yet added to ``incident.affected_predictions``
    #: (folded in by ``fold``: one dataclass copy per emit instead of one per prediction).
    unfolded_predictions: int = 0

    def fold(self) -> Incident:
        if self.unfolded_predictions:
            self.incident = replace(self.incident, affected_predictions=self.incident.affected_predictions
                                    + self.unfolded_predictions)
            self.unfolded_predictions = 0
        return self.incident

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class IncidentBook:
    """Turns findings into incident lifecycles, cases and containment commands (pure, bounded)."""

    def __init__(
        self,
        policy: ContainmentPolicy | None = None,
        cooldown_ms: int = 3_600_000,
        max_open: int = 100_000,
        *,
        quiet_ms: int = 1_800_000,
        check_every_ms: int = 60_000,
        tiers: ImpactTiers | None = None,
        correlation_window_ms: int = 6 * 3_600_000,
        known_good_after: int = 500,
        max_evidence_per_incident: int = 50,
        database: str = "mlsentry",
    ) -> None:
        self.policy = policy or ContainmentPolicy()
        self.cooldown_ms = cooldown_ms
        self.max_open = max_open
        self.quiet_ms = quiet_ms
        if type(check_every_ms) is not int or check_every_ms <= 0:  # observe_many's sweep schedule relies on it
            raise ValueError(f"check_every_ms must be a positive int (ms), not {check_every_ms!r}")
        self.check_every_ms = check_every_ms
        self.tiers = tiers or ImpactTiers()
        self.max_evidence_per_incident = max_evidence_per_incident
        self.database = database
        self.linker = CaseLinker(correlation_window_ms, max_open)
        self.versions = ModelVersions(known_good_after)
        self.budget = EnforceBudget(self.policy.max_enforce_per_target_per_hour)
        self._tracked: OrderedDict[Key, _Tracked] = OrderedDict()
        self._by_id: dict[str, Key] = {}
        self._by_asset: dict[tuple[str, str], set[Key]] = {}
        self.watermark = 0
        self._last_sweep = 0
        # A finding from a lagging partition may arrive after the watermark stopped moving: sweep once more.
        self._changed_since_sweep = False

    # ---- the two entry points ------------------------------------------------------------

    def handle(self, finding: Finding, output: EngineOutput) -> None:
        """A detector's finding: open, update or re-open the incident for its (kind, subject)."""
        self.watermark = max(self.watermark, finding.ts)
        key = (finding.kind, finding.subject)
        tracked = self._tracked.get(key)
        if tracked is not None and not tracked.is_open and finding.ts - (tracked.resolved_at or 0) >= self.cooldown_ms:
            self._forget(tracked)
            tracked = None
        if tracked is None:
            tracked = self._open(key, finding)
        else:
            self._update(tracked, finding)
        self._changed_since_sweep = True
        self._contain(tracked, output)
        anchors: list[_Tracked] = []
        if tracked.incident.case_id is None:  # a case is joined once; re-fires only update
            deploy = self.versions.deploy_of(finding.model_id or "", finding.model_version)
            deploy = None if deploy is None or deploy.known_good else deploy  # a proven version is no bad rollout
            link = self.linker.link(tracked.incident, deploy)
            anchors = self._join_case(tracked, link) if link is not None else []
        self._emit(tracked, output)
        for anchor in anchors:
            self._emit(anchor, output)  # the earlier incidents now name the later one too

    def observe(self, event: Event, output: EngineOutput) -> None:
        """Event time moved on: record evidence, count affected predictions, resolve and expire."""
        self.observe_many((event,), output)

    def observe_many(self, events: Sequence[Event], output: EngineOutput) -> None:
        """``observe`` on each event in turn, with no finding among them (the engine's path per micro-batch).

        Which open incidents a model's predictions touch changes only with a finding or a sweep,
        so between sweeps it is looked up once per model rather than once per prediction.
        """
        touched_by_model: dict[str, list[_Tracked]] = {}
        settled: set[str] = set()  # models none of whose deploys is proving itself: their predictions count nowhere
        versions, model_is_open = self.versions, self._model_has_open_incident
        check_every, watermark = self.check_every_ms, self.watermark
        # The watermark at which the next sweep is due (its boundary passes the last sweep's); at once
        # when a finding changed what is open (nothing in this loop changes it).
        next_sweep = -math.inf if self._changed_since_sweep else (self._last_sweep // check_every + 1) * check_every
        for event in events:
            if event.ts > watermark:
                watermark = event.ts
            if type(event) is not PredictionEvent:
                versions.observe(event, model_is_open)
                settled.clear()  # a deploy unsettles its model
            elif event.model_id not in settled:
                versions.observe(event, model_is_open)
                if versions.settled(event.model_id):
                    settled.add(event.model_id)
            if self._by_asset:
                if type(event) is PredictionEvent:
                    touched = touched_by_model.get(event.model_id)
                    if touched is None:
                        touched = touched_by_model[event.model_id] = self._touched_by(event)
                else:
                    touched = self._touched_by(event)
                for tracked in touched:
                    self._record(tracked, event, output)
            if watermark >= next_sweep:
                boundary = watermark - watermark % check_every
                self.watermark, self._last_sweep, self._changed_since_sweep = watermark, boundary, False
                self._sweep(boundary, output)
                touched_by_model.clear()
                next_sweep = (boundary // check_every + 1) * check_every
        self.watermark = watermark

    @property
    def open_incidents(self) -> list[Incident]:
        return [tracked.fold() for tracked in self._tracked.values() if tracked.is_open]

    # ---- lifecycle -----------------------------------------------------------------------

    def _open(self, key: Key, finding: Finding) -> _Tracked:
        tier = self.tiers.tier_of(finding)
        incident = Incident.from_finding(finding, self.tiers.severity(finding.strength, tier))
        incident = replace(incident, impact_tier=tier, owners=self.tiers.owners_of(finding),
                           playbook_id=playbook_for(finding.kind).playbook_id,
                           affected_predictions=_int(finding.evidence.get("n_after")))
        tracked = _Tracked(key, incident, finding.summary, finding.ts, tier)
        self._tracked[key] = tracked
        self._by_id[incident.incident_id] = key
        for asset in _assets(incident):
            self._by_asset.setdefault(asset, set()).add(key)
        self._bound(key)
        return tracked

    def _update(self, tracked: _Tracked, finding: Finding) -> None:
        old = tracked.incident
        severity = self.tiers.severity(finding.strength, tracked.tier)
        tracked.incident = replace(
            old,
            severity=max(old.severity, severity, key=SEVERITIES.index),
            window_end=max(old.window_end, finding.window_end),
            score=float(finding.score),
            threshold=float(finding.threshold),
            evidence={**old.evidence, **finding.evidence, "findings": str(_int(old.evidence.get("findings"), 1) + 1)},
            recommended_actions=tuple(dict.fromkeys(old.recommended_actions + tuple(finding.recommended_actions))),
            status="open",
            updated_at=finding.ts,
            updates=old.updates + 1,
        )
        tracked.base_summary = finding.summary
        tracked.last_signal = finding.ts
        tracked.resolved_at = None
        self._tracked.move_to_end(tracked.key)

    def _sweep(self, now: int, output: EngineOutput) -> None:
        """Resolve, expire and forget as of ``now``, a multiple of ``check_every_ms``.

        Judging at the boundary rather than at the exact watermark makes the outcome the same
        whichever event happened to cross it (partitions interleave differently than a replay).
        """
        for tracked in list(self._tracked.values()):
            if tracked.is_open and now - tracked.last_signal >= self.quiet_ms:
                self._resolve(tracked, now, output, f"the signal has been quiet for {self.quiet_ms // 60_000} min")
            elif not tracked.is_open and now - (tracked.resolved_at or 0) >= self.cooldown_ms:
                self._forget(tracked)
            for command in list(tracked.active.values()):
                if command.expires_at <= now:
                    self._revert(tracked, command, command.expires_at, "the command expired", output)
        self.linker.prune(now)

    def _resolve(self, tracked: _Tracked, now: int, output: EngineOutput, why: str) -> None:
        at = max(now, tracked.incident.updated_at)
        for command in list(tracked.active.values()):
            self._revert(tracked, command, at, f"incident {tracked.incident.incident_id} resolved ({why})", output)
        tracked.resolved_at = at
        tracked.incident = replace(tracked.incident, status="resolved", updated_at=at)
        self._emit(tracked, output, resolved_because=why)

    def _forget(self, tracked: _Tracked) -> None:
        self._tracked.pop(tracked.key, None)
        self._by_id.pop(tracked.incident.incident_id, None)
        for asset in _assets(tracked.incident):
            keys = self._by_asset.get(asset)
            if keys is not None:
                keys.discard(tracked.key)
                if not keys:
                    del self._by_asset[asset]

    def _bound(self, newest: Key) -> None:
        while len(self._tracked) > self.max_open:
            oldest = next(iter(self._tracked.values()))
            if oldest.key == newest:
                return
            self._forget(oldest)

    # ---- containment ---------------------------------------------------------------------

    def _contain(self, tracked: _Tracked, output: EngineOutput) -> None:
        incident = tracked.incident
        for command in self.policy.commands_for(incident, tracked.tier, self.versions.rollback_target):
            if command.command_id in tracked.issued:
                continue  # one command per step, whatever re-fires, replays or severity changes
            if command.mode == "enforce" and not self.budget.try_spend(command.target, command.issued_at):
                command = downgrade(command, f"more than {self.budget.per_hour} enforced commands on "
                                             f"{command.target} within an hour")
            tracked.issued.add(command.command_id)
            tracked.active[command.command_id] = command
            output.commands.append(command)
        contained = any(command.mode == "enforce" for command in tracked.active.values())
        tracked.incident = replace(tracked.incident, status="contained" if contained else "open")

    def _revert(self, tracked: _Tracked, command: ContainmentCommand, at: int, why: str, output: EngineOutput) -> None:
        tracked.active.pop(command.command_id, None)
        output.commands.append(self.policy.revert_for(command, at, why))

    # ---- cases ---------------------------------------------------------------------------

    def _join_case(self, tracked: _Tracked, link: CaseLink) -> list[_Tracked]:
        """Put ``tracked`` in ``link``'s case; return the earlier incidents, which must be re-published."""
        tracked.case_summary = link.summary
        tracked.incident = replace(tracked.incident, case_id=link.case_id,
                                   related_incidents=_merge(tracked.incident.related_incidents, link.anchor_ids))
        anchors = []
        for anchor_id in link.anchor_ids:
            anchor = self._tracked.get(self._by_id.get(anchor_id, ("", "")))
            if anchor is None:
                continue
            anchor.case_summary = link.summary
            anchor.incident = replace(anchor.incident, case_id=link.case_id,
                                      updated_at=max(anchor.incident.updated_at, tracked.incident.updated_at),
                                      related_incidents=_merge(anchor.incident.related_incidents,
                                                               (tracked.incident.incident_id,)))
            anchors.append(anchor)
        return anchors

    # ---- evidence and impact -------------------------------------------------------------

    def _touched_by(self, event: Event) -> list[_Tracked]:
        """The open incidents on an asset of ``event``, by key (the hot path: most events touch none)."""
        by_asset = self._by_asset
        found = [keys for asset in _event_assets(event) if (keys := by_asset.get(asset))]
        if not found:
            return []
        keys = found[0] if len(found) == 1 else set().union(*found)
        return [tracked for key in sorted(keys) if (tracked := self._tracked.get(key)) is not None and tracked.is_open]

    def _record(self, tracked: _Tracked, event: Event, output: EngineOutput) -> None:
        incident = tracked.incident
        if isinstance(event, PredictionEvent):
            if not _same_model(incident, event):
                return
            if not event.is_feedback:
                tracked.unfolded_predictions += 1
        if tracked.evidence_rows < self.max_evidence_per_incident:
            tracked.evidence_rows += 1
            output.evidence.append(evidence_row(incident.incident_id, event))

    def _model_has_open_incident(self, model_id: str) -> bool:
        if not self._by_asset:
            return False
        return any(self._tracked[key].is_open for key in self._by_asset.get(("model", model_id), ()))

    # ---- publishing ----------------------------------------------------------------------

    def _emit(self, tracked: _Tracked, output: EngineOutput, resolved_because: str = "") -> None:
        tracked.fold()
        incident = replace(tracked.incident, summary=self._story(tracked, resolved_because))
        incident = replace(incident, investigation_queries=render_queries(incident, self.database))
        output.incidents.append(incident)

    def _story(self, tracked: _Tracked, resolved_because: str) -> str:
        incident = tracked.incident
        parts = [tracked.base_summary]
        if incident.updates:
            parts.append(f"Updated {incident.updates} time(s) as the detector re-fired; severity now {incident.severity}.")
        if tracked.case_summary:
            parts.append(tracked.case_summary)
        owners = ", ".join(incident.owners) or "no owner on record"
        impact = f"Impact: {tracked.tier}-tier asset ({owners})"
        if incident.affected_predictions:
            impact += f"; about {incident.affected_predictions} predictions served since the change began may be wrong"
        parts.append(impact + ".")
        parts.append(_containment_story(sorted(tracked.issued), tracked.active))
        if resolved_because:
            parts.append(f"Resolved: {resolved_because}; its containment commands were reverted.")
        playbook = playbook_for(incident.kind)
        parts.append(f"Check next ({playbook.playbook_id}): " + "; ".join(playbook.next_checks) + ".")
        return " ".join(parts)


def _containment_story(issued: list[str], active: Mapping[str, ContainmentCommand]) -> str:
    if not issued:
        return "Done automatically: nothing (the containment policy asks for no action at this severity and tier)."
    if not active:
        return f"Done automatically: {len(issued)} command(s), all since reverted or expired."
    done = "; ".join(
        f"{c.action.replace('_', ' ')} {c.target} "
        f"({'dry run: logged, not applied' if c.mode == 'dry_run' else 'enforced'}; command {c.command_id})"
        for c in active.values()
    )
    return (f"Done automatically: {done}. To undo: mlsentry contain revert <command_id>; "
            f"commands expire on their own and are reverted when the incident resolves.")


def evidence_row(incident_id: str, event: Event) -> EvidenceRow:
    """A short, plain-language record of ``event`` for the evidence archive."""
    kind = event_type_name(event)
    if isinstance(event, PredictionEvent):
        what = "feedback" if event.is_feedback else "prediction"
        outcome = f"label {event.label}" if event.is_feedback else f"score {event.score} -> {event.prediction}"
        return EvidenceRow(incident_id, event.ts, kind, event.event_id,
                           f"{what} by {event.model_id}:{event.model_version}: {outcome}",
                           principal=event.principal, model_id=event.model_id, model_version=event.model_version,
                           attributes=dict(event.segment))
    if isinstance(event, AccessEvent):
        return EvidenceRow(incident_id, event.ts, kind, event.event_id,
                           f"{event.principal} {event.action} {event.resource_type} {event.resource} x{event.count} "
                           f"({event.bytes} bytes, {event.outcome})", principal=event.principal,
                           attributes={"source_ip": event.source_ip or "", **dict(event.attributes)})
    return EvidenceRow(incident_id, event.ts, kind, event.event_id,
                       f"{event.change} of {event.rows} rows to {event.dataset} {event.version} from {event.source} "
                       f"by {event.actor}, {'approved by ' + event.approved_by if event.approved_by else 'no approval'}",
                       principal=event.actor, dataset=event.dataset,
                       attributes={k: str(v) for k, v in event.label_counts.items()})


def _assets(incident: Incident) -> list[tuple[str, str]]:
    assets = []
    if incident.model_id:
        assets.append(("model", incident.model_id))
    if incident.principal:
        assets.append(("principal", incident.principal))
    if incident.dataset:
        assets.append(("dataset", incident.dataset))
    return assets


def _event_assets(event: Event) -> list[tuple[str, str]]:
    if isinstance(event, PredictionEvent):
        return [("model", event.model_id)]
    if isinstance(event, AccessEvent):
        return [("principal", event.principal)]
    if isinstance(event, DataChangeEvent):
        return [("dataset", event.dataset), ("principal", event.actor)]
    return []


def _same_model(incident: Incident, event: PredictionEvent) -> bool:
    if incident.model_version and incident.model_version != event.model_version:
        return False
    segment = incident.segment or {}
    return all(event.segment.get(name) == value for name, value in segment.items())


def _merge(existing: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(existing + more))


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(float(text)) if text else default
    except ValueError:
        return default


__all__ = ["EngineOutput", "EvidenceRow", "IncidentBook", "evidence_row", "stable_digest"]
