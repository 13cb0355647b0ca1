"""Cases: incidents from different streams that tell one story share a ``case_id``.

Three stories are linked, each within ``window_ms`` of event time:

* a data change (label shift, unapproved change, provenance mismatch, volume spike) to a
  dataset, then degradation or drift of a model that consumes it (the data incident's
  ``consumers`` evidence names the models);
* a download burst by a principal, then a query burst by the same principal (theft, then
  extraction);
* a new model version deployed, then drift of that version (bad rollout).

The case id is derived from the earlier incident (or the deploy), so replays agree. The
linker is pure and bounded (``max_keys`` anchors, the oldest forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping

from detectors.containment import Deploy
from detectors.findings import Incident, segment_key, stable_digest

DATA_KINDS = frozenset({"label_shift", "unapproved_change", "provenance_mismatch", "volume_spike"})
MODEL_KINDS = frozenset({"prediction_drift", "feature_drift", "concept_drift", "segment_degradation",
                         "canary_regression"})
THEFT_KINDS = frozenset({"download_burst"})
EXTRACTION_KINDS = frozenset({"query_burst"})
_DATA_VERBS: Mapping[str, str] = {
    "label_shift": "shifted labels",
    "unapproved_change": "was changed without approval",
    "provenance_mismatch": "does not match its recorded provenance",
    "volume_spike": "grew far more than usual",
}


@dataclass(frozen=True)
class Anchor:
    """An earlier incident a later one may belong with."""

    incident_id: str
    case_id: str
    ts: int
    story: str


@dataclass
class DataChange:
    """Data incidents about one dataset version (several detectors may flag the same change)."""

    case_id: str
    ts: int
    base: str
    verbs: list[str]
    incident_ids: list[str]

    @property
    def story(self) -> str:
        return f"{self.base}, {' and '.join(self.verbs)}"


@dataclass(frozen=True)
class CaseLink:
    """How a new incident joins a case: the shared id, the sentence naming both, the earlier incidents."""

    case_id: str
    summary: str
    anchor_ids: tuple[str, ...] = ()


class CaseLinker:
    def __init__(self, window_ms: int = 6 * 3_600_000, max_keys: int = 100_000) -> None:
        self.window_ms = window_ms
        self.max_keys = max_keys
        self._changes: OrderedDict[tuple[str, str], DataChange] = OrderedDict()
        self._by_consumer: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._by_principal: OrderedDict[str, Anchor] = OrderedDict()
        # Later incidents seen before their anchor (partitions interleave): model_id / principal -> incidents.
        self._model_followers: OrderedDict[str, list[Anchor]] = OrderedDict()
        self._extractions: OrderedDict[str, list[Anchor]] = OrderedDict()

    def link(self, incident: Incident, deploy: Deploy | None = None) -> CaseLink | None:
        """Remember ``incident`` as a possible anchor and return the case it joins, if any."""
        if incident.kind in DATA_KINDS:
            return self._remember_data_change(incident)
        if incident.kind in THEFT_KINDS and incident.principal:
            self._remember(self._by_principal, incident.principal, incident, describe_access(incident))
            return self._precede(self._by_principal[incident.principal], self._extractions.get(incident.principal))
        if incident.kind in EXTRACTION_KINDS and incident.principal:
            self._remember_follower(self._extractions, incident.principal, incident)
            return self._follow(self._by_principal.get(incident.principal), incident, "then")
        if incident.kind in MODEL_KINDS and incident.model_id:
            self._remember_follower(self._model_followers, incident.model_id, incident)
            return self._follow_data_change(incident) or self._rollout(incident, deploy)
        return None

    def _remember_follower(self, table: OrderedDict[str, list[Anchor]], key: str, incident: Incident) -> None:
        followers = [f for f in table.pop(key, []) if f.incident_id != incident.incident_id][-7:]
        table[key] = followers + [Anchor(incident.incident_id, "", incident.detected_at, describe_effect(incident))]
        while len(table) > self.max_keys:
            table.popitem(last=False)

    def _precede(self, anchor: Anchor, followers: list[Anchor] | None, joiner: str = "then") -> CaseLink | None:
        """An earlier incident handled after later ones it explains (partitions interleave): link them now."""
        late = [f for f in followers or () if 0 <= f.ts - anchor.ts <= self.window_ms]
        if not late:
            return None
        effects = "; ".join(f"{f.story} (incident {f.incident_id})" for f in late)
        return CaseLink(anchor.case_id, f"Case {anchor.case_id}: {anchor.story}; {joiner} {effects}.",
                        tuple(f.incident_id for f in late))

    def prune(self, watermark: int) -> None:
        horizon = watermark - self.window_ms
        for followers in (self._model_followers, self._extractions):
            while followers and next(iter(followers.values()))[-1].ts < horizon:
                followers.popitem(last=False)
        while self._by_principal and next(iter(self._by_principal.values())).ts < horizon:
            self._by_principal.popitem(last=False)
        while self._changes and next(iter(self._changes.values())).ts < horizon:
            self._changes.popitem(last=False)
        for consumer in [c for c, change in self._by_consumer.items() if change not in self._changes]:
            del self._by_consumer[consumer]

    def _remember_data_change(self, incident: Incident) -> CaseLink | None:
        """Record a data incident; a second detector flagging the same version joins the first one's case."""
        version = (incident.dataset or "", incident.evidence.get("version", ""))
        verb = _DATA_VERBS.get(incident.kind, incident.kind.replace("_", " "))
        change = self._changes.get(version)
        earlier: tuple[str, ...] = ()
        if change is None:
            change = DataChange(stable_digest("case", "data", *version), incident.window_start,
                                describe_data_change(incident), [], [])
            self._changes[version] = change
        elif incident.incident_id not in change.incident_ids:
            earlier = tuple(change.incident_ids)
        if incident.incident_id not in change.incident_ids:
            change.verbs.append(verb + _detail(incident))
            change.incident_ids.append(incident.incident_id)
        followers: list[Anchor] = []
        for consumer in filter(None, incident.evidence.get("consumers", "").split(",")):
            self._by_consumer.pop(consumer, None)
            self._by_consumer[consumer] = version
            followers += self._model_followers.get(consumer, [])
        self._bound()
        anchor = Anchor(incident.incident_id, change.case_id, change.ts, change.story)
        late = self._precede(anchor, followers, joiner="since then")
        if late is not None:
            return CaseLink(late.case_id, late.summary, earlier + late.anchor_ids)
        return CaseLink(change.case_id, f"Case {change.case_id}: {change.story}.", earlier) if earlier else None

    def _follow_data_change(self, incident: Incident) -> CaseLink | None:
        change = self._changes.get(self._by_consumer.get(incident.model_id or "", ("", "")))
        if change is None or not 0 <= incident.detected_at - change.ts <= self.window_ms:
            return None
        summary = f"{change.story}; since then {describe_effect(incident)} (incident {incident.incident_id})."
        return CaseLink(change.case_id, f"Case {change.case_id}: {summary}", tuple(change.incident_ids))

    def _bound(self) -> None:
        while len(self._changes) > self.max_keys:
            self._changes.popitem(last=False)
        while len(self._by_consumer) > self.max_keys:
            self._by_consumer.popitem(last=False)

    def _remember(self, anchors: OrderedDict[str, Anchor], key: str, incident: Incident, story: str) -> None:
        case_id = incident.case_id or stable_digest("case", incident.incident_id)
        anchors.pop(key, None)
        anchors[key] = Anchor(incident.incident_id, case_id, incident.window_start, story)
        while len(anchors) > self.max_keys:
            anchors.popitem(last=False)

    def _follow(self, anchor: Anchor | None, incident: Incident, joiner: str) -> CaseLink | None:
        if anchor is None or anchor.incident_id == incident.incident_id:
            return None
        if not 0 <= incident.detected_at - anchor.ts <= self.window_ms:
            return None
        summary = f"{anchor.story}; {joiner} {describe_effect(incident)} (incident {incident.incident_id})."
        return CaseLink(anchor.case_id, f"Case {anchor.case_id}: {summary}", (anchor.incident_id,))

    def _rollout(self, incident: Incident, deploy: Deploy | None) -> CaseLink | None:
        if deploy is None or not 0 <= incident.window_start - deploy.ts <= self.window_ms:
            return None
        case_id = stable_digest("case", "deploy", deploy.model_id, deploy.version, deploy.ts)
        minutes = (incident.window_start - deploy.ts) // 60_000
        summary = (
            f"Case {case_id}: possible bad rollout: version {deploy.version} of {deploy.model_id} was deployed by "
            f"{deploy.principal} (artifact {deploy.artifact_hash or 'hash not recorded'}); {minutes} min later "
            f"{describe_effect(incident)} (incident {incident.incident_id})."
        )
        return CaseLink(case_id, summary)


def describe_data_change(incident: Incident) -> str:
    """``dataset X version v42 from source S by U, approved by A`` (what happened is added per detector)."""
    evidence = incident.evidence
    approval = f"approved by {evidence['approved_by']}" if evidence.get("approved_by") else "with no approval"
    return (
        f"dataset {incident.dataset} version {evidence.get('version', '?')} from source "
        f"{evidence.get('source', '?')} by {evidence.get('actor', '?')}, {approval}"
    )


def _detail(incident: Incident) -> str:
    evidence = incident.evidence
    if incident.kind == "label_shift" and evidence.get("new_proportions"):
        return f" ({evidence.get('baseline_proportions', '?')} -> {evidence['new_proportions']})"
    if evidence.get("check"):
        return f" ({evidence['check'].replace('_', ' ')})"
    return ""


def describe_access(incident: Incident) -> str:
    evidence = incident.evidence
    count = evidence.get("downloads_in_window") or evidence.get("queries_in_window") or ""
    what = "downloaded" if incident.kind == "download_burst" else "queried"
    return f"principal {incident.principal} {what} {count + ' items ' if count else ''}in a burst".replace("  ", " ")


def describe_effect(incident: Incident) -> str:
    """One clause with the incident's own numbers, e.g. ``accuracy for region=EU fell from 0.94 to 0.81``."""
    evidence = incident.evidence
    where = f"{incident.model_id}:{incident.model_version}" if incident.model_id else ""
    segment = segment_key(incident.segment).replace(",", " ")
    for metric in ("accuracy", "precision", "recall", "auc"):
        before, after = evidence.get(f"baseline_{metric}"), evidence.get(f"recent_{metric}")
        if before and after:
            verb = "fell" if float(after) < float(before) else "rose"
            return f"{metric} of {where}{' for ' + segment if segment else ''} {verb} from {before} to {after}"
    if evidence.get("baseline_mean") and evidence.get("recent_mean"):
        return (f"prediction scores of {where}{' for ' + segment if segment else ''} moved from mean "
                f"{evidence['baseline_mean']} to {evidence['recent_mean']}")
    if incident.kind in EXTRACTION_KINDS | THEFT_KINDS:
        return describe_access(incident)
    subject = where or incident.principal or incident.dataset or "the subject"
    return f"{incident.kind.replace('_', ' ')} on {subject} (score {incident.score:.3g}, threshold {incident.threshold:.3g})"
