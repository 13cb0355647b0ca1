"""Run ours and the peers over every scenario and score them against the ground truth."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from bench.detection.attacks import Alarm, Attack
from bench.detection.metrics import Matching, Summary, match, start_positions, summarize
from bench.detection.ours import decode, run_ours
from bench.detection.peers import PeerRun, run_peers
from bench.detection.signals import extract_signals
from bench.detection.traffic import Scenario

SUITE = "ours (whole suite)"


@dataclass
class Scored:
    """One source (a detector of ours, the whole suite, or a peer) on one scenario."""

    source: str
    alarms: list[Alarm]
    matching: Matching
    seconds: float
    note: str = ""


@dataclass
class ScenarioResult:
    name: str
    description: str
    events: int
    days: float
    attacks: list[Attack]
    ours: dict[str, Scored] = field(default_factory=dict)  # detector name (and SUITE) -> scored
    peers: dict[str, Scored] = field(default_factory=dict)
    detector_kinds: dict[str, set[str]] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    generate_seconds: float = 0.0

    def summary(self, scored: Scored, kinds: Iterable[str] | None = None) -> Summary:
        return summarize([scored.matching], self.events, self.days, scored.seconds, kinds)


def _by_source(alarms: Sequence[Alarm], sources: Iterable[str]) -> dict[str, list[Alarm]]:
    grouped: dict[str, list[Alarm]] = {source: [] for source in sources}
    for alarm in alarms:
        grouped.setdefault(alarm.source, []).append(alarm)
    return grouped


def evaluate_scenario(scenario: Scenario, detector_names: Sequence[str], peers: Sequence[str] | None,
                      generate_seconds: float = 0.0) -> ScenarioResult:
    """Score our detectors (and, unless ``peers`` is None, raw River plus ``peers``) on one scenario."""
    events = decode(scenario.records)
    positions = start_positions([event.ts for event in events], scenario.attacks)
    result = ScenarioResult(scenario.name, scenario.description, len(events), scenario.days, scenario.attacks,
                            positions=positions, generate_seconds=generate_seconds)
    ours = run_ours(events, detector_names)
    result.detector_kinds = ours.kinds
    result.ours[SUITE] = Scored(SUITE, ours.alarms, match(ours.alarms, scenario.attacks, positions),
                                ours.engine_seconds)
    for source, alarms in _by_source(ours.alarms, detector_names).items():
        seconds = ours.detector_seconds.get(source, 0.0)
        result.ours[source] = Scored(source, alarms, match(alarms, scenario.attacks, positions), seconds)
    del events
    if peers is not None:
        signals = extract_signals(scenario.records, scenario.end_ms)
        for run in run_peers(signals, peers):
            result.peers[run.name] = _score_peer(run, scenario.attacks, positions)
    return result


def _score_peer(run: PeerRun, attacks: Sequence[Attack], positions: dict[str, int]) -> Scored:
    note = run.note
    if run.failed_signals:
        note = f"refused {run.failed_signals} signals ({run.note})"
    return Scored(run.name, run.alarms, match(run.alarms, attacks, positions), run.seconds, note)


def restricted(result: ScenarioResult, scored: Scored, kinds: set[str]) -> Matching:
    """``scored`` re-matched with only its alarms of ``kinds`` (a peer on one detector's signals)."""
    return match([alarm for alarm in scored.alarms if alarm.kind in kinds], result.attacks, result.positions)


def timed(build: Iterable[Scenario]) -> Iterable[tuple[Scenario, float]]:
    """Scenarios with the seconds it took to generate each."""
    iterator = iter(build)
    while True:
        started = time.perf_counter()
        try:
            scenario = next(iterator)
        except StopIteration:
            return
        yield scenario, time.perf_counter() - started
