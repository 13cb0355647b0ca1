"""Detection-quality metrics: pure functions from alarms and ground truth to numbers.

An alarm *detects* an attack when its kind is in the attack's family, its subject agrees
with the attack's subject, and it lands in ``[start_ts, start_ts + max_delay_ms]``. The
first such alarm fixes the delay (event time, and number of stream events since the attack
began); later ones are *repeats*. An alarm that detects no attack and is not collateral
damage of one is a *false alarm*; on a clean stream every alarm is one.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from bench.detection.attacks import Alarm, Attack, family_of

DAY_MS = 86_400_000


def segment_compatible(expected: Mapping[str, str], found: Mapping[str, str] | None) -> bool:
    """``found`` names the same slice: at least one shared attribute and no disagreement."""
    if not found:
        return False
    shared = set(expected) & set(found)
    return bool(shared) and all(expected[name] == found[name] for name in shared)


def subject_matches(expected: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    """Every field the attack names agrees; a model-level alarm (no version) covers all versions."""
    for name, value in expected.items():
        if name == "segment":
            if not segment_compatible(value, found.get("segment")):
                return False
        elif name == "model_version" and found.get(name) is None:
            continue
        elif found.get(name) != value:
            return False
    return True


def detects(alarm: Alarm, attack: Attack) -> bool:
    return (family_of(alarm.kind) == family_of(attack.kind) and attack.start_ts <= alarm.ts <= attack.deadline_ts
            and subject_matches(attack.subject, alarm.subject))


def is_collateral(alarm: Alarm, attack: Attack) -> bool:
    """The alarm is about something the attack legitimately disturbs, or a late consequence
    of it (not a false alarm)."""
    if (family_of(alarm.kind) == family_of(attack.kind) and subject_matches(attack.subject, alarm.subject)
            and attack.start_ts <= alarm.ts <= max(attack.deadline_ts, attack.end_ts + attack.aftermath_ms)):
        return True
    if not attack.start_ts <= alarm.ts <= attack.deadline_ts:
        return False
    return any(family_of(alarm.kind) == family_of(kind) and subject_matches(subject, alarm.subject)
               for kind, subject in attack.collateral)


@dataclass(frozen=True)
class Detection:
    attack: Attack
    alarm: Alarm | None
    start_position: int

    @property
    def caught(self) -> bool:
        return self.alarm is not None

    @property
    def delay_ms(self) -> int | None:
        return None if self.alarm is None else self.alarm.ts - self.attack.start_ts

    @property
    def delay_events(self) -> int | None:
        return None if self.alarm is None else self.alarm.position - self.start_position


@dataclass
class Matching:
    detections: list[Detection] = field(default_factory=list)
    false_alarms: list[Alarm] = field(default_factory=list)
    repeats: int = 0
    collateral: int = 0


def match(alarms: Iterable[Alarm], attacks: Sequence[Attack], start_positions: Mapping[str, int]) -> Matching:
    """Assign each alarm (in time order) to the earliest-starting attack it detects.

    ``start_positions`` maps ``attack_id`` to the stream index of the first event at or after
    the attack's start (for the delay in events).
    """
    first: dict[str, Alarm] = {}
    result = Matching()
    for alarm in sorted(alarms, key=lambda item: (item.ts, item.position)):
        hits = sorted((a for a in attacks if detects(alarm, a)), key=lambda a: a.start_ts)
        if hits:
            if hits[0].attack_id in first:
                result.repeats += 1
            else:
                first[hits[0].attack_id] = alarm
        elif any(is_collateral(alarm, attack) for attack in attacks):
            result.collateral += 1
        else:
            result.false_alarms.append(alarm)
    result.detections = [Detection(a, first.get(a.attack_id), start_positions.get(a.attack_id, 0)) for a in attacks]
    return result


def median_or_none(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


@dataclass(frozen=True)
class Summary:
    """Quality of one detector (or peer, or the suite) over some streams."""

    attacks: int
    caught: int
    median_delay_s: float | None
    median_delay_events: float | None
    false_alarms: int
    repeats: int
    collateral: int
    events: int
    days: float
    seconds: float

    @property
    def recall(self) -> float | None:
        return self.caught / self.attacks if self.attacks else None

    @property
    def false_per_day(self) -> float:
        return self.false_alarms / self.days if self.days else 0.0

    @property
    def false_per_100k(self) -> float:
        return self.false_alarms / self.events * 100_000 if self.events else 0.0

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.seconds if self.seconds else None


def summarize(matchings: Sequence[Matching], events: int, days: float, seconds: float,
              kinds: Iterable[str] | None = None) -> Summary:
    """Combine matchings of several streams; recall and delays only over attacks of ``kinds`` (all if None)."""
    wanted = None if kinds is None else set(kinds)
    detections = [d for m in matchings for d in m.detections if wanted is None or d.attack.kind in wanted]
    return Summary(
        attacks=len(detections),
        caught=sum(d.caught for d in detections),
        median_delay_s=_seconds(median_or_none(d.delay_ms for d in detections)),
        median_delay_events=median_or_none(d.delay_events for d in detections),
        false_alarms=sum(len(m.false_alarms) for m in matchings),
        repeats=sum(m.repeats for m in matchings),
        collateral=sum(m.collateral for m in matchings),
        events=events,
        days=days,
        seconds=seconds,
    )


def _seconds(milliseconds: float | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000.0


def median_delay_with_misses(detections: Iterable[Detection]) -> float:
    """Median delay in seconds where a missed attack counts as infinitely late."""
    delays = [d.delay_ms / 1000.0 if d.delay_ms is not None else float("inf") for d in detections]
    return statistics.median(delays) if delays else float("inf")


def start_positions(timestamps: Sequence[int], attacks: Iterable[Attack]) -> dict[str, int]:
    """Index of the first event at or after each attack's start (``timestamps`` sorted)."""
    return {attack.attack_id: bisect_left(timestamps, attack.start_ts) for attack in attacks}
