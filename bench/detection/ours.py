"""Our detectors over a scenario: whatever the registry holds when the harness runs.

Records are decoded with the replay path's validator (``streams.codec.event_from_record``)
and fed to one ``Engine`` built from registry names, so the numbers are the ones
``mlsentry replay`` would give. Each incident counts once, at its first emitted state
(the incident book may re-emit it as it is updated or resolved).
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import detectors
from bench.detection.attacks import Alarm, alarm_from_incident
from detectors.base import DETECTORS, build_detectors
from detectors.engine import Engine
from detectors.events import Event
from detectors.findings import INCIDENT_KINDS
from streams.codec import event_from_record


def discover_detectors() -> tuple[list[str], dict[str, str]]:
    """Registered detector names after importing every public ``detectors`` module.

    Modules that fail to import (a colleague mid-edit) are reported, not fatal.
    """
    import detectors.library  # noqa: F401

    failures = {}
    for module in pkgutil.iter_modules(detectors.__path__):
        if not module.name.startswith("_"):
            try:
                importlib.import_module(f"detectors.{module.name}")
            except Exception as exc:  # noqa: BLE001 - report and carry on with what registered
                failures[module.name] = f"{type(exc).__name__}: {exc}"
    return sorted(DETECTORS), failures


def declared_kinds(detector: Any) -> set[str]:
    """Incident kinds a detector is judged on: its ``kind`` or ``kinds`` class attribute.

    A detector declaring neither is judged on the kinds it actually raised.
    """
    kinds = set(getattr(detector, "kinds", ()) or ())
    kind = getattr(detector, "kind", None)
    if isinstance(kind, str):
        kinds.add(kind)
    return {kind for kind in kinds if kind in INCIDENT_KINDS}


class _Timed:
    """Wraps a detector to measure the time spent in its ``update``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.event_types = inner.event_types
        self.seconds = 0.0

    def update(self, event: Event) -> Any:
        started = time.perf_counter()
        result = self.inner.update(event)
        self.seconds += time.perf_counter() - started
        return result

    def clone(self) -> "_Timed":
        return _Timed(self.inner.clone())


@dataclass
class OursRun:
    alarms: list[Alarm] = field(default_factory=list)
    engine_seconds: float = 0.0
    detector_seconds: dict[str, float] = field(default_factory=dict)
    kinds: dict[str, set[str]] = field(default_factory=dict)
    decode_seconds: float = 0.0


def decode(records: Sequence[Mapping[str, Any]]) -> list[Event]:
    return [event_from_record(record["type"], record["event"]) for record in records]


def run_ours(events: Sequence[Event], names: Sequence[str]) -> OursRun:
    timed = [_Timed(detector) for detector in build_detectors(list(names))]
    engine = Engine(timed)  # type: ignore[arg-type]
    run = OursRun(kinds={t.name: declared_kinds(t.inner) for t in timed})
    seen: set[str] = set()
    started = time.perf_counter()
    for position, event in enumerate(events):
        for incident in engine.process(event).incidents:
            if incident.incident_id not in seen:
                seen.add(incident.incident_id)
                run.alarms.append(alarm_from_incident(incident.detector, incident.to_record(), position))
    run.engine_seconds = time.perf_counter() - started
    run.detector_seconds = {t.name: t.seconds for t in timed}
    undeclared = {name for name, kinds in run.kinds.items() if not kinds}
    for alarm in run.alarms:
        if alarm.source in undeclared:
            run.kinds[alarm.source].add(alarm.kind)
    return run
