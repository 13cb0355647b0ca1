"""Seeded, pure stream generators shared by tests and doctests.

Every generator takes a ``seed`` and returns the same events for the same arguments (it
uses its own ``random.Random(seed)``, never the global one). Event times start at
``T0`` (2026-01-01T00:00:00Z) unless told otherwise.
"""

from __future__ import annotations

import heapq
import random
from typing import Iterable, Iterator, Sequence

from detectors.base import Detector, Positioned, update_many
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
        # Alternate downloads and queries so every access detector sees its own keys explode.
        action = "query" if index % 2 else "download"
        return AccessEvent(f"k{index}", ts, f"p{index}", action, "model", "r")
    return DataChangeEvent(
        f"k{index}", ts, f"ds{index}", "v1", "src", "actor", "append", 10,
        label_counts={"a": 5, "b": 5}, content_hash=f"h{index}",
    )


def only(events: Iterable[Event], event_types: tuple[type, ...]) -> list[Event]:
    """The events a detector reading ``event_types`` would see."""
    return [event for event in events if isinstance(event, event_types)]


def _diurnal(ts: int, base: float) -> float:
    """``base`` with a daily rhythm of +/-50%: busiest mid-afternoon UTC, quietest at night."""
    import math  # local: only the query generators need it

    hour = (ts / 3_600_000) % 24
    return base * (1.0 + 0.5 * math.sin((hour - 9) / 24 * 2 * math.pi))


def query_stream(
    seed: int,
    n_principals: int,
    minutes: int,
    burst: tuple[str, int, int, int] | None = None,
    base: float = 120.0,
    noise: float = 15.0,
    start_ts: int = T0,
) -> list[AccessEvent]:
    """Services ``u0..`` reporting their per-minute query ``count`` with a daily rhythm, sorted by time.

    Each principal has its own scale (0.5-2x ``base``); every fifth principal is a batch job
    active only in some minutes. ``burst = (principal, at_minute, per_minute, over_minutes)``
    replaces that principal's count with ``per_minute`` for ``over_minutes``.
    """
    rng = random.Random(seed)
    scales = [0.5 + 1.5 * rng.random() for _ in range(n_principals)]
    events: list[AccessEvent] = []
    for minute in range(minutes):
        for user in range(n_principals):
            if user % 5 == 4 and rng.random() < 0.6:
                continue  # batch job: idle this minute
            ts = start_ts + minute * MINUTE_MS + rng.randrange(MINUTE_MS)
            count = max(1, int(rng.gauss(_diurnal(ts, base * scales[user]), noise)))
            if burst is not None and f"u{user}" == burst[0] and burst[1] <= minute < burst[1] + burst[3]:
                count = burst[2]
            events.append(_query(f"u{user}", ts, f"api-{user % 3}", count, len(events)))
    events.sort(key=lambda event: (event.ts, event.event_id))
    return events


def _query(principal: str, ts: int, resource: str, count: int, index: int) -> AccessEvent:
    return AccessEvent(f"q-{index}", ts, principal, "query", "endpoint", resource, bytes=count * 900, count=count)


def prediction_traffic(
    seed: int,
    n: int,
    principals: int = 5,
    attacker: str | None = None,
    attack_at: int = 0,
    attack: str = "boundary",
    model: tuple[str, str] = ("credit", "v7"),
    start_ts: int = T0,
    step_ms: int = 500,
) -> list[PredictionEvent]:
    """``n`` predictions from services ``s0..`` (random features, Beta(2, 5) scores).

    From index ``attack_at``, every third prediction comes from ``attacker``: with
    ``attack="boundary"`` its scores sit near 0.5 (probing the decision boundary); with
    ``attack="sweep"`` it varies ``amount`` upward step by step with all else fixed.
    """
    rng = random.Random(seed)
    events = []
    sweep_step = 0
    for index in range(n):
        ts = start_ts + index * step_ms
        if attacker is not None and index >= attack_at and index % 3 == 0:
            if attack == "sweep":
                sweep_step += 1
                features = {"amount": 10.0 * sweep_step, "account_days": 400.0, "risk_index": 0.1}
                score = min(1.0, 0.05 + 0.01 * sweep_step)
            else:
                features = _random_features(rng)
                score = 0.5 + rng.uniform(-0.04, 0.04)
            principal = attacker
        else:
            features = _random_features(rng)
            score = rng.betavariate(2.0, 5.0)
            principal = f"s{rng.randrange(principals)}"
        events.append(PredictionEvent(f"pt-{seed}-{index}", ts, model[0], model[1], principal=principal,
                                      features=features, prediction="yes" if score >= 0.5 else "no", score=score))
    return events


def _random_features(rng: random.Random) -> dict[str, float]:
    return {"amount": round(rng.lognormvariate(3.5, 1.0), 2), "account_days": float(rng.randint(1, 3000)),
            "risk_index": round(rng.gauss(0.0, 1.0), 4)}


# --- Prediction-side streams (feature drift, feedback, segments, anomalies, canaries) ---

REGIONS = ("EU", "US", "APAC")
DEVICES = ("android", "ios", "web")


def labeled_stream(
    seed: int,
    n: int,
    error_rate: float = 0.2,
    change_at: int | None = None,
    error_after: float = 0.4,
    degraded_segment: dict[str, str] | None = None,
    feedback_fraction: float = 0.3,
    feedback_delay_ms: int = 600_000,
    model: tuple[str, str] = ("churn", "v1"),
    start_ts: int = T0,
    step_ms: int = 1_000,
) -> list[PredictionEvent]:
    """``n`` predictions (segments region x device) plus delayed feedback, sorted by event time.

    A prediction is wrong with probability ``error_rate``; from prediction ``change_at`` on,
    with ``error_after`` (only inside ``degraded_segment`` when given). Feedback (same
    ``event_id``, no features, a label) follows a ``feedback_fraction`` of predictions after
    0.5-1.5 x ``feedback_delay_ms``.
    """
    rng = random.Random(seed)
    timed: list[tuple[int, int, PredictionEvent]] = []
    for index in range(n):
        ts = start_ts + index * step_ms
        segment = {"region": rng.choice(REGIONS), "device": rng.choice(DEVICES)}
        changed = change_at is not None and index >= change_at
        if degraded_segment is not None:
            changed = changed and all(segment.get(k) == v for k, v in degraded_segment.items())
        event = _labeled_prediction(rng, f"l-{seed}-{index}", ts, model, segment)
        timed.append((ts, 2 * index, event))
        if rng.random() < feedback_fraction:
            wrong = rng.random() < (error_after if changed else error_rate)
            feedback_ts = ts + int(rng.uniform(0.5, 1.5) * feedback_delay_ms)
            timed.append((feedback_ts, 2 * index + 1, _feedback_for(event, feedback_ts, wrong)))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in timed]


def _labeled_prediction(
    rng: random.Random, event_id: str, ts: int, model: tuple[str, str], segment: dict[str, str]
) -> PredictionEvent:
    score = rng.random()
    return PredictionEvent(
        event_id=event_id, ts=ts, model_id=model[0], model_version=model[1], principal=f"svc-{rng.randrange(5)}",
        segment=segment, features={"x": rng.gauss(0.0, 1.0)},
        prediction="positive" if score >= 0.5 else "negative", score=score,
    )


def _feedback_for(prediction: PredictionEvent, ts: int, wrong: bool) -> PredictionEvent:
    label = prediction.prediction if not wrong else ("negative" if prediction.prediction == "positive" else "positive")
    return PredictionEvent(
        event_id=prediction.event_id, ts=ts, model_id=prediction.model_id, model_version=prediction.model_version,
        principal=prediction.principal, segment=prediction.segment, label=label,
    )


def feature_stream(
    seed: int,
    n: int,
    change_at: int | None = None,
    shift: float = 1.0,
    ramp: int = 0,
    model: tuple[str, str] = ("churn", "v1"),
    start_ts: int = T0,
    step_ms: int = 1_000,
) -> list[PredictionEvent]:
    """Predictions with features ``x`` ~ N(0,1), ``amount`` ~ lognormal, ``visits`` ~ 0..20.

    From ``change_at`` the mean of ``x`` moves by ``shift`` (reached linearly over ``ramp``
    events: a gradual drift when ``ramp`` > 0); the other features never change.
    """
    rng = random.Random(seed)
    events = []
    for index in range(n):
        moved = 0.0
        if change_at is not None and index >= change_at:
            moved = shift * min(1.0, (index - change_at + 1) / ramp) if ramp > 0 else shift
        features = {"x": rng.gauss(moved, 1.0), "amount": rng.lognormvariate(3.5, 1.0),
                    "visits": float(rng.randint(0, 20))}
        events.append(PredictionEvent(
            event_id=f"f-{seed}-{index}", ts=start_ts + index * step_ms, model_id=model[0],
            model_version=model[1], principal=f"svc-{rng.randrange(5)}", features=features, score=rng.random(),
        ))
    return events


def anomaly_stream(
    seed: int,
    n: int,
    odd_principal: str | None = None,
    odd_from: int = 0,
    n_principals: int = 20,
    model: tuple[str, str] = ("churn", "v1"),
    start_ts: int = T0,
    step_ms: int = 500,
) -> list[PredictionEvent]:
    """Predictions from principals ``svc-0..`` with 4 correlated-ish features; ``odd_principal``
    (one of them) sends far-out inputs from event ``odd_from`` on."""
    rng = random.Random(seed)
    events = []
    for index in range(n):
        principal = f"svc-{rng.randrange(n_principals)}"
        odd = principal == odd_principal and index >= odd_from
        base = rng.gauss(0.0, 1.0)
        features = {"a": base + rng.gauss(0.0, 0.3), "b": rng.gauss(0.0, 1.0),
                    "c": rng.uniform(0.0, 10.0), "d": rng.lognormvariate(0.0, 0.5)}
        if odd:
            features = {"a": rng.gauss(6.0, 0.5), "b": rng.gauss(-5.0, 0.5), "c": rng.uniform(9.0, 10.0),
                        "d": rng.uniform(8.0, 9.0)}
        events.append(PredictionEvent(
            event_id=f"n-{seed}-{index}", ts=start_ts + index * step_ms, model_id=model[0],
            model_version=model[1], principal=principal, features=features, score=rng.random(),
        ))
    return events


def canary_stream(
    seed: int,
    n: int,
    canary_from: int | None = None,
    canary_share: float = 0.2,
    canary_scores: tuple[float, float] = (6.0, 4.0),
    canary_error: float = 0.2,
    error_rate: float = 0.2,
    feedback_fraction: float = 0.3,
    old: tuple[str, str] = ("churn", "v1"),
    new: tuple[str, str] = ("churn", "v2"),
    start_ts: int = T0,
    step_ms: int = 1_000,
) -> list[PredictionEvent]:
    """Version ``old`` scores Beta(3, 7); from ``canary_from`` a ``canary_share`` of traffic goes to
    ``new`` with Beta(``canary_scores``) and error rate ``canary_error``. Feedback as in ``labeled_stream``."""
    rng = random.Random(seed)
    timed: list[tuple[int, int, PredictionEvent]] = []
    for index in range(n):
        ts = start_ts + index * step_ms
        canary = canary_from is not None and index >= canary_from and rng.random() < canary_share
        model, (alpha, beta) = (new, canary_scores) if canary else (old, (3.0, 7.0))
        score = rng.betavariate(alpha, beta)
        event = PredictionEvent(
            event_id=f"c-{seed}-{index}", ts=ts, model_id=model[0], model_version=model[1],
            features={"x": rng.random()}, prediction="positive" if score >= 0.5 else "negative", score=score,
        )
        timed.append((ts, 2 * index, event))
        if rng.random() < feedback_fraction:
            wrong = rng.random() < (canary_error if canary else error_rate)
            feedback_ts = ts + rng.randint(60_000, 600_000)
            timed.append((feedback_ts, 2 * index + 1, _feedback_for(event, feedback_ts, wrong)))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in timed]


def in_batches(detector: Detector, events: Sequence[Event], sizes: Sequence[int]) -> list[Positioned]:
    """``update_many`` over ``events`` cut into batches of ``sizes`` in turn; positions in the whole stream.

    >>> from detectors.score_drift import ScoreDriftDetector
    >>> in_batches(ScoreDriftDetector(), [], (3,))
    []
    """
    found: list[Positioned] = []
    start, turn = 0, 0
    while start < len(events):
        batch = events[start:start + sizes[turn % len(sizes)]]
        found.extend((start + position, finding) for position, finding in update_many(detector, batch))
        start, turn = start + len(batch), turn + 1
    return found
