"""The pure detection engine: decoded events in, incidents and containment commands out.

The Faust worker and ``mlsentry replay`` both feed this same object, so a file replay and
a live stream give the same incidents for the same events. Incident lifecycles, cases and
containment live in ``detectors.incidents`` (``IncidentBook``), re-exported here.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from detectors.base import Detector, build_detectors
from detectors.containment import ContainmentPolicy
from detectors.events import Event
from detectors.findings import Finding
from detectors.incidents import EngineOutput, EvidenceRow, IncidentBook
from detectors.library import DEFAULT_DETECTORS

__all__ = ["DEFAULT_DETECTORS", "DetectorSet", "Engine", "EngineOutput", "EvidenceRow", "IncidentBook"]


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
