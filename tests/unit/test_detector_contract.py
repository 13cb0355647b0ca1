"""The contract every registered detector keeps: picklable, clonable, deterministic, bounded."""

from __future__ import annotations

import pickle
import random
from typing import Sequence

import pytest

import detectors.library  # noqa: F401  (registers the built-in detectors)
from detectors._testing import exploding_keys, mixed_stream, only
from detectors.base import DETECTORS, Detector, update_many
from detectors.events import Event
from detectors.findings import Finding

pytestmark = pytest.mark.unit

NAMES = sorted(DETECTORS)
# A million keys costs ~2-3 s per detector on a 2-core box; 200k proves the bound just as well.
EXPLODING_KEYS = 200_000
MAX_KEYS = 1_000


def _events_for(detector: Detector, seed: int = 1) -> list[Event]:
    return only(mixed_stream(seed), detector.event_types)


def _run(detector: Detector, events: Sequence[Event]) -> list[Finding]:
    return [finding for event in events if (finding := detector.update(event)) is not None]


def test_every_built_in_detector_is_registered() -> None:
    assert {"score_drift", "download_burst", "label_shift", "provenance"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_follows_the_protocol(name: str) -> None:
    detector = DETECTORS[name]()
    assert isinstance(detector, Detector)
    assert detector.name == name
    assert detector.event_types and all(isinstance(t, type) for t in detector.event_types)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_same_findings(name: str) -> None:
    first = _run(DETECTORS[name](), _events_for(DETECTORS[name]()))
    second = _run(DETECTORS[name](), _events_for(DETECTORS[name]()))
    assert first == second


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("learned_fraction", [0.0, 0.5])
def test_pickle_round_trip_keeps_behaviour(name: str, learned_fraction: float) -> None:
    detector = DETECTORS[name]()
    events = _events_for(detector)
    cut = int(len(events) * learned_fraction)
    _run(detector, events[:cut])
    restored = pickle.loads(pickle.dumps(detector))
    assert _run(restored, events[cut:]) == _run(detector, events[cut:])


@pytest.mark.parametrize("name", NAMES)
def test_clone_is_fresh_and_independent(name: str) -> None:
    original = DETECTORS[name]()
    events = _events_for(original)
    half = len(events) // 2
    _run(original, events[:half])
    clone = original.clone()
    assert type(clone) is type(original) and clone is not original
    untouched = pickle.loads(pickle.dumps(original))
    assert _run(clone, events) == _run(DETECTORS[name](), events)  # fresh: unlearned, same settings
    assert _run(original, events[half:]) == _run(untouched, events[half:])  # the clone's learning leaked nowhere


@pytest.mark.parametrize("name", NAMES)
def test_memory_stays_bounded_when_keys_explode(name: str) -> None:
    detector = DETECTORS[name](max_keys=MAX_KEYS)  # type: ignore[call-arg]
    for event in exploding_keys(detector.event_types[0], EXPLODING_KEYS):
        detector.update(event)
    assert detector.n_tracked_keys == MAX_KEYS  # type: ignore[attr-defined]


def test_findings_explain_themselves() -> None:
    events = mixed_stream(1)
    findings = [f for name in NAMES for f in _run(DETECTORS[name](), events)]
    assert {f.kind for f in findings} >= {"prediction_drift", "download_burst", "label_shift"}
    for finding in findings:
        assert 0.0 <= finding.strength <= 1.0
        assert finding.window_start <= finding.window_end == finding.ts
        assert finding.evidence and all(isinstance(v, str) for v in finding.evidence.values())
        assert "2026-01-01T" in finding.summary and finding.recommended_actions


@pytest.mark.parametrize("name", NAMES)
def test_update_many_gives_what_update_gives_event_by_event(name: str) -> None:
    """Micro-batches of any size (``update_many``) must not change a single finding or its position."""
    events = _events_for(DETECTORS[name]())
    sequential = DETECTORS[name]()
    expected = [(position, finding) for position, event in enumerate(events)
                if (finding := sequential.update(event)) is not None]
    batched, rng, start, got = DETECTORS[name](), random.Random(name), 0, []
    while start < len(events):
        size = rng.choice([1, 2, 7, 64, 500, 3_000])
        got.extend((start + position, finding) for position, finding in update_many(batched, events[start:start + size]))
        start += size
    assert got == expected


@pytest.mark.parametrize("name", NAMES)
def test_clone_keeps_every_setting(name: str) -> None:
    """``clone()`` reads each ``__init__`` parameter back by name: every setting must survive it."""
    import inspect

    detector = DETECTORS[name]()
    parameters = [p for p in inspect.signature(type(detector).__init__).parameters if p != "self"]
    copy = detector.clone()
    assert type(copy) is type(detector)
    assert {p: getattr(copy, p) for p in parameters} == {p: getattr(detector, p) for p in parameters}
