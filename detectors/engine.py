"""The pure detection engine: decoded events in, incidents and containment commands out.

The Faust worker and ``mlsentry replay`` both feed this same object, so a file replay and
a live stream give the same incidents for the same events. Incident lifecycles, cases and
containment live in ``detectors.incidents`` (``IncidentBook``), re-exported here.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from detectors.base import Detector, Positioned, build_detectors, share_feedback_joins, update_many
from detectors.batch import Batch
from detectors.containment import ContainmentPolicy
from detectors.events import Event
from detectors.findings import Finding
from detectors.incidents import EngineOutput, EvidenceRow, IncidentBook
from detectors.library import DEFAULT_DETECTORS

__all__ = ["DEFAULT_DETECTORS", "DetectorSet", "Engine", "EngineOutput", "EvidenceRow", "IncidentBook", "feed_book"]


class DetectorSet:
    """The detectors of one shard of state (the whole stream in replay, one partition in the worker).

    Routes each event to the detectors that read its type and collects their findings.
    """

    def __init__(self, detectors: Sequence[Detector] | None = None) -> None:
        self.detectors = list(detectors) if detectors is not None else build_detectors(DEFAULT_DETECTORS)
        share_feedback_joins(self.detectors)
        self._routes: dict[type, list[Detector]] = {}
        for detector in self.detectors:
            for event_type in detector.event_types:
                self._routes.setdefault(event_type, []).append(detector)

    def update(self, event: Event) -> list[Finding]:
        """The findings of ``event``, in detector order (as ``update_batch`` of one event)."""
        return [finding for _, finding in self.update_batch((event,))]

    def update_batch(self, events: Sequence[Event]) -> list[Positioned]:
        """Findings over ``events`` with their event's position, ordered as per-event ``update`` would give them.

        Each detector sees the sub-sequence of the types it reads in one call, so a detector
        with a micro-batch ``update_many`` (numpy) amortises its work over the batch.
        """
        by_type: dict[type, Sequence[int]] = {}
        kinds = set(map(type, events))
        if len(kinds) == 1:  # one type (a partition of one topic): no positions to collect
            by_type[kinds.pop()] = range(len(events))
        else:
            positions_of: dict[type, list[int]] = {}
            for position, event in enumerate(events):
                positions_of.setdefault(type(event), []).append(position)
            by_type.update(positions_of)
        ordered: list[tuple[int, int, Finding]] = []
        for event_type, positions in by_type.items():
            detectors = self._routes.get(event_type, ())
            if not detectors:
                continue
            same_type = len(positions) == len(events)
            subset = events if same_type else [events[position] for position in positions]
            batch = Batch(subset)  # what several detectors derive from the events, derived once
            for order, detector in enumerate(detectors):
                for index, finding in update_many(detector, subset, batch):
                    ordered.append((index if same_type else positions[index], order, finding))
        ordered.sort(key=lambda item: item[:2])
        return [(position, finding) for position, _, finding in ordered]

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

    def process_batch(self, events: Sequence[Event], output: EngineOutput | None = None) -> EngineOutput:
        """``process`` over ``events`` in order, with the detectors run once per micro-batch."""
        output = output if output is not None else EngineOutput()
        feed_book(self.book, events, self.detector_set.update_batch(events), output)
        return output

    def process_many(self, events: Iterable[Event], batch_size: int = 1_024) -> EngineOutput:
        """Feed events in order, ``batch_size`` at a time; return everything they caused."""
        output = EngineOutput()
        batch: list[Event] = []
        for event in events:
            batch.append(event)
            if len(batch) >= batch_size:
                self.process_batch(batch, output)
                batch = []
        if batch:
            self.process_batch(batch, output)
        return output


def feed_book(book: IncidentBook, events: Sequence[Event], findings: Sequence[Positioned],
              output: EngineOutput) -> None:
    """Hand the book each event's findings, then the event itself, in event order (as ``process`` does)."""
    observed = 0
    for position, finding in findings:
        if position > observed:
            book.observe_many(events[observed:position], output)
            observed = position
        book.handle(finding, output)
    book.observe_many(events[observed:] if observed else events, output)
