"""Playbooks: per incident kind, an id, what to check next, and ready-to-run investigation SQL.

The SQL templates name ``{database}`` and ``{name}`` placeholders; :func:`render_queries`
fills them with safely quoted literals (:func:`sql_literal`), so an incident carries
queries an analyst can paste into ``mlsentry sql`` as they are.

>>> sql_literal("o'brien\\\\x")
"'o\\\\'brien\\\\\\\\x'"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from detectors.findings import Incident


@dataclass(frozen=True)
class Playbook:
    playbook_id: str
    next_checks: tuple[str, ...]
    queries: tuple[str, ...]


_TIMELINE = (
    "SELECT updated_at, status, severity, updates, affected_predictions, summary FROM {database}.incident_events "
    "WHERE incident_id = {incident_id} ORDER BY updated_at"
)
_EVIDENCE = (
    "SELECT ts, event_type, event_id, principal, model_id, dataset, description FROM {database}.incident_evidence "
    "WHERE incident_id = {incident_id} ORDER BY ts"
)
_COMMANDS = (
    "SELECT issued_at, action, target, mode, outcome, revert_of, reason FROM {database}.containment_log FINAL "
    "WHERE incident_id = {incident_id} ORDER BY issued_at"
)
_CASE = (
    "SELECT updated_at, incident_id, kind, severity, status, summary FROM {database}.case_timeline "
    "WHERE case_id = {case_id} ORDER BY updated_at"
)
_PRINCIPAL = (
    "SELECT * FROM {database}.principal_activity(principal = {principal}, "
    "since = {since}, until = {until}) ORDER BY ts"
)
_DATASET = (
    "SELECT incident_id, kind, severity, status, summary FROM {database}.incidents_latest "
    "WHERE dataset = {dataset} OR incident_id IN (SELECT arrayJoin(related_incidents) FROM {database}.incidents_latest "
    "WHERE dataset = {dataset}) ORDER BY detected_at"
)
_MODEL = (
    "SELECT incident_id, kind, severity, status, model_version, summary FROM {database}.incidents_latest "
    "WHERE model_id = {model_id} ORDER BY detected_at"
)
_BASE = (_TIMELINE, _EVIDENCE, _COMMANDS)
_MODEL_CHECKS = (
    "Compare recent inputs per feature and segment with the training data",
    "Check whether a deploy, a data change or an upstream schema change came just before",
    "Confirm with the model owner before lifting the hold or rollback",
)
_DATA_CHECKS = (
    "Diff the flagged version against the last approved one (rows, labels, source)",
    "Ask the actor and the source's owner to explain the change",
    "List models trained on the dataset since the change and hold their promotion",
)
_ACCESS_CHECKS = (
    "Confirm the activity with the principal's owner",
    "Check where the downloaded artifacts or query results went (egress logs)",
    "Rotate the principal's credentials if the activity is not confirmed",
)

PLAYBOOKS: Mapping[str, Playbook] = {
    "feature_drift": Playbook("PB-MODEL-DRIFT", _MODEL_CHECKS, _BASE + (_MODEL,)),
    "prediction_drift": Playbook("PB-MODEL-DRIFT", _MODEL_CHECKS, _BASE + (_MODEL,)),
    "concept_drift": Playbook("PB-MODEL-DRIFT", _MODEL_CHECKS, _BASE + (_MODEL,)),
    "segment_degradation": Playbook("PB-MODEL-DEGRADATION", _MODEL_CHECKS, _BASE + (_MODEL,)),
    "canary_regression": Playbook("PB-MODEL-ROLLOUT", _MODEL_CHECKS, _BASE + (_MODEL,)),
    "input_anomaly": Playbook("PB-INPUT-ABUSE", _ACCESS_CHECKS, _BASE + (_PRINCIPAL,)),
    "download_burst": Playbook("PB-ARTIFACT-THEFT", _ACCESS_CHECKS, _BASE + (_PRINCIPAL,)),
    "query_burst": Playbook("PB-MODEL-EXTRACTION", _ACCESS_CHECKS, _BASE + (_PRINCIPAL,)),
    "unusual_access": Playbook("PB-UNUSUAL-ACCESS", _ACCESS_CHECKS, _BASE + (_PRINCIPAL,)),
    "label_shift": Playbook("PB-DATA-POISONING", _DATA_CHECKS, _BASE + (_DATASET,)),
    "unapproved_change": Playbook("PB-DATA-CHANGE-CONTROL", _DATA_CHECKS, _BASE + (_DATASET,)),
    "provenance_mismatch": Playbook("PB-DATA-PROVENANCE", _DATA_CHECKS, _BASE + (_DATASET,)),
    "volume_spike": Playbook("PB-DATA-VOLUME", _DATA_CHECKS, _BASE + (_DATASET,)),
}
GENERIC = Playbook("PB-GENERIC", ("Read the evidence and the timeline; page the asset owner",), _BASE)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def playbook_for(kind: str) -> Playbook:
    return PLAYBOOKS.get(kind, GENERIC)


def sql_literal(value: object) -> str:
    """``value`` as a ClickHouse string literal: backslashes and quotes escaped, control bytes hex-escaped."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return "'" + "".join(ch if ch >= " " else f"\\x{ord(ch):02x}" for ch in text) + "'"


def render_queries(incident: Incident, database: str = "mlsentry", window_ms: int = 3_600_000) -> tuple[str, ...]:
    """The playbook's queries for ``incident``; a query whose subject is missing is left out."""
    if not _DATABASE.match(database):
        raise ValueError(f"database must be a plain identifier, got {database!r}")
    values = _values(incident, window_ms)
    rendered = []
    for template in playbook_for(incident.kind).queries:
        names = set(_PLACEHOLDER.findall(template)) - {"database"}
        if any(values.get(name) is None for name in names):
            continue
        literals = {name: sql_literal(values[name]) for name in names}
        rendered.append(_PLACEHOLDER.sub(lambda m: database if m.group(1) == "database" else literals[m.group(1)], template))
    return tuple(rendered)


def _values(incident: Incident, window_ms: int) -> dict[str, object | None]:
    return {
        "incident_id": incident.incident_id,
        "case_id": incident.case_id,
        "principal": incident.principal,
        "dataset": incident.dataset,
        "model_id": incident.model_id,
        "since": _iso(incident.window_start - window_ms),
        "until": _iso(max(incident.updated_at, incident.detected_at) + window_ms),
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(max(ms, 0) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
