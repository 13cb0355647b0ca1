"""The pure detection engine: decoded events in, incidents and containment commands out.

The Faust worker and ``mlsentry replay`` both feed this same object, so a file replay and
a live stream give the same incidents for the same events.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from detectors.base import Detector, build_detectors
from detectors.containment import ContainmentPolicy
from detectors.events import Event
from detectors.findings import ContainmentCommand, Finding, Incident
from detectors.library import DEFAULT_DETECTORS


@dataclass
class EngineOutput:
    """Everything one or more events caused, in the order it was decided."""

    incidents: list[Incident] = field(default_factory=list)
    commands: list[ContainmentCommand] = field(default_factory=list)

    def extend(self, other: "EngineOutput") -> None:
        self.incidents.extend(other.incidents)
        self.commands.extend(other.commands)


class DetectorSet:
    """The detectors of one shard of state (the whole stream in replay, one partition in the worker).

    Routes each event to the detectors that read its type and collects their findings.
    """

    def __init__(self, detectors: Sequence[Detector] | None = None) -> None:
        self.detectors = list(detectors) if detectors is not None else build_detectors(DEFAULT_DETECTORS)
        self._routes: dict[type, list[Detector]] = {}
        for detector in self.detectors:
            for event_type in detector.event_types:
                self._routes.setdefault(event_type, []).append(detector)

    def update(self, event: Event) -> list[Finding]:
        findings = []
        for detector in self._routes.get(type(event), ()):
            finding = detector.update(event)
            if finding is not None:
                findings.append(finding)
        return findings

    def clone(self) -> "DetectorSet":
        """Fresh, unlearned detectors with the same settings."""
        return DetectorSet([detector.clone() for detector in self.detectors])


class IncidentBook:
    """Turns findings into incidents and containment commands.

    A (kind, subject) that already produced an incident within ``cooldown_ms`` of event
    time is not reported again: one change, one incident. The memory of recent incidents
    is bounded by ``max_open`` (oldest forgotten first).
    """

    def __init__(self, policy: ContainmentPolicy | None = None, cooldown_ms: int = 3_600_000,
                 max_open: int = 100_000) -> None:
        self.policy = policy or ContainmentPolicy()
        self.cooldown_ms = cooldown_ms
        self.max_open = max_open
        self._last_reported: OrderedDict[tuple[str, str], int] = OrderedDict()

    def handle(self, finding: Finding, output: EngineOutput) -> None:
        if self._is_new(finding):
            incident = Incident.from_finding(finding)
            output.incidents.append(incident)
            output.commands.extend(self.policy.commands_for(incident))

    def observe(self, event: Event, output: EngineOutput) -> None:
        """Event time moved on (hook for resolution and expiry; nothing to do yet)."""

    def _is_new(self, finding: Finding) -> bool:
        key = (finding.kind, finding.subject)
        last = self._last_reported.get(key)
        if last is not None and finding.ts - last < self.cooldown_ms:
            return False
        self._last_reported[key] = finding.ts
        self._last_reported.move_to_end(key)
        while len(self._last_reported) > self.max_open:
            self._last_reported.popitem(last=False)
        return True


class Engine:
    """One ``DetectorSet`` feeding one ``IncidentBook``: the whole pure pipeline for one shard."""

    def __init__(
        self,
        detectors: Sequence[Detector] | None = None,
        policy: ContainmentPolicy | None = None,
        cooldown_ms: int = 3_600_000,
        max_open: int = 100_000,
        book: IncidentBook | None = None,
    ) -> None:
        self.detector_set = DetectorSet(detectors)
        self.book = book or IncidentBook(policy, cooldown_ms, max_open)

    @property
    def detectors(self) -> list[Detector]:
        return self.detector_set.detectors

    @property
    def policy(self) -> ContainmentPolicy:
        return self.book.policy

    def process(self, event: Event, output: EngineOutput | None = None) -> EngineOutput:
        """Feed one event to its detectors; append what it caused to ``output`` (or a new one)."""
        output = output if output is not None else EngineOutput()
        for finding in self.detector_set.update(event):
            self.book.handle(finding, output)
        self.book.observe(event, output)
        return output

    def process_many(self, events: Iterable[Event]) -> EngineOutput:
        """Feed events in order; return everything they caused."""
        output = EngineOutput()
        for event in events:
            self.process(event, output)
        return output
