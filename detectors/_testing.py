"""Seeded, pure stream generators shared by tests and doctests.

Every generator takes a ``seed`` and returns the same events for the same arguments (it
uses its own ``random.Random(seed)``, never the global one). Event times start at
``T0`` (2026-01-01T00:00:00Z) unless told otherwise.
"""

from __future__ import annotations

import heapq
import random
from typing import Iterable, Iterator

from detectors.events import AccessEvent, DataChangeEvent, Event, PredictionEvent

T0 = 1_767_225_600_000
MINUTE_MS = 60_000


def score_stream(
    seed: int,
    n: int,
    change_at: int | None = None,
    before: tuple[float, float] = (3.0, 7.0),
    after: tuple[float, float] = (6.0, 4.0),
    model: tuple[str, str] = ("churn", "v1"),
    start_ts: int = T0,
    step_ms: int = 1_000,
    noise: float = 0.02,
) -> list[PredictionEvent]:
    """``n`` predictions with Beta(``before``) scores plus noise, Beta(``after``) from ``change_at``."""
    rng = random.Random(seed)
    events = []
    for index in range(n):
        alpha, beta = after if change_at is not None and index >= change_at else before
        score = min(1.0, max(0.0, rng.betavariate(alpha, beta) + rng.gauss(0.0, noise)))
        events.append(
            PredictionEvent(
                event_id=f"p-{seed}-{index}",
                ts=start_ts + index * step_ms,
                model_id=model[0],
                model_version=model[1],
                features={"x": rng.random()},
                prediction="yes" if score >= 0.5 else "no",
                score=score,
            )
        )
    return events


def download_stream(
    seed: int,
    n_principals: int,
    minutes: int,
    burst: tuple[str, int, int, int] | None = None,
    start_ts: int = T0,
) -> list[AccessEvent]:
    """Principals ``u0..`` each downloading 0-3 artifacts a minute, sorted by event time.

    ``burst = (principal, at_minute, artifacts, over_minutes)`` adds a bulk download spread
    evenly over ``over_minutes`` starting at ``at_minute``.
    """
    rng = random.Random(seed)
    events: list[AccessEvent] = []
    for minute in range(minutes):
        for user in range(n_principals):
            for _ in range(_downloads_this_minute(rng)):
                ts = start_ts + minute * MINUTE_MS + rng.randrange(MINUTE_MS)
                events.append(_download(f"u{user}", ts, f"model-{rng.randrange(50)}", rng, len(events)))
    if burst is not None:
        events.extend(_burst(burst, rng, start_ts, len(events)))
    events.sort(key=lambda event: (event.ts, event.event_id))
    return events


def _downloads_this_minute(rng: random.Random) -> int:
    # Mostly idle, sometimes a few; a rare busier minute keeps the baseline honest.
    roll = rng.random()
    if roll < 0.9:
        return 0
    if roll < 0.995:
        return rng.randint(1, 3)
    return rng.randint(4, 8)


def _download(principal: str, ts: int, resource: str, rng: random.Random, index: int) -> AccessEvent:
    return AccessEvent(
        event_id=f"a-{index}",
        ts=ts,
        principal=principal,
        action="download",
        resource_type="model",
        resource=resource,
        bytes=rng.randint(1_000_000, 50_000_000),
    )


def _burst(burst: tuple[str, int, int, int], rng: random.Random, start_ts: int, first: int) -> list[AccessEvent]:
    principal, at_minute, artifacts, over_minutes = burst
    span = over_minutes * MINUTE_MS
    begin = start_ts + at_minute * MINUTE_MS
    return [
        _download(principal, begin + index * span // artifacts, f"model-{index}", rng, first + index)
        for index in range(artifacts)
    ]


def data_change_stream(
    seed: int,
    n: int,
    poison_at: int | None = None,
    dataset: str = "transactions",
    labels: dict[str, float] | None = None,
    poisoned: dict[str, float] | None = None,
    start_ts: int = T0,
    step_ms: int = 3_600_000,
) -> list[DataChangeEvent]:
    """``n`` hourly appends whose labels follow ``labels``; change ``poison_at`` follows ``poisoned``."""
    rng = random.Random(seed)
    labels = labels or {"legit": 0.95, "fraud": 0.05}
    poisoned = poisoned or {"legit": 0.70, "fraud": 0.30}
    events = []
    for index in range(n):
        mix = poisoned if index == poison_at else labels
        rows = rng.randint(800, 1200)
        events.append(
            DataChangeEvent(
                event_id=f"d-{seed}-{dataset}-{index}",
                ts=start_ts + index * step_ms,
                dataset=dataset,
                version=f"v{index + 1}",
                source="partner-feed" if index == poison_at else "etl-nightly",
                actor="svc-ingest" if index != poison_at else "contractor-7",
                change="append",
                rows=rows,
                label_counts=_sample_labels(rng, mix, rows),
                content_hash=f"sha256:{seed}-{dataset}-{index}",
                approved_by=None if index == poison_at else "data-steward",
                consumers=("fraud-model",),
            )
        )
    return events


def _sample_labels(rng: random.Random, mix: dict[str, float], rows: int) -> dict[str, int]:
    names = sorted(mix)
    drawn = rng.choices(names, weights=[mix[name] for name in names], k=rows)
    return {name: drawn.count(name) for name in names}


def mixed_stream(seed: int) -> list[Event]:
    """One stream with three injected problems, ordered by event time.

    A score shift for ``churn:v1`` at prediction 1500 (of 3000, one per second), a burst of
    200 downloads over 2 minutes by ``u3`` at minute 40 (of 60, 30 principals), and a
    poisoned append (version ``v9``) to ``transactions`` at change 8 (of 12, one every 5 min).
    """
    predictions = score_stream(seed, 3000, change_at=1500)
    downloads = download_stream(seed + 1, 30, 60, burst=("u3", 40, 200, 2))
    changes = data_change_stream(seed + 2, 12, poison_at=8, step_ms=5 * MINUTE_MS)
    streams: list[list[Event]] = [list(predictions), list(downloads), list(changes)]
    return list(heapq.merge(*streams, key=_event_time))


def _event_time(event: Event) -> int:
    return event.ts


def exploding_keys(event_type: type, n: int, start_ts: int = T0) -> Iterator[Event]:
    """``n`` events of ``event_type``, each with a key (model version, principal, dataset, hash) never seen before."""
    for index in range(n):
        yield _keyed_event(event_type, index, start_ts + index)


def _keyed_event(event_type: type, index: int, ts: int) -> Event:
    if event_type is PredictionEvent:
        return PredictionEvent(f"k{index}", ts, "m", f"v{index}", features={"x": 0.0}, score=0.5)
    if event_type is AccessEvent:
        return AccessEvent(f"k{index}", ts, f"p{index}", "download", "model", "r")
    return DataChangeEvent(
        f"k{index}", ts, f"ds{index}", "v1", "src", "actor", "append", 10,
        label_counts={"a": 5, "b": 5}, content_hash=f"h{index}",
    )


def only(events: Iterable[Event], event_types: tuple[type, ...]) -> list[Event]:
    """The events a detector reading ``event_types`` would see."""
    return [event for event in events if isinstance(event, event_types)]
