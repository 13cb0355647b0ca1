"""Real data: River's bundled datasets replayed as prediction streams with injected changes.

Rows are shuffled with a fixed seed (so the part before the injection is stationary),
stamped one per second, scored by an online River model (StandardScaler | LogisticRegression)
that learns each label when its feedback arrives a minute later, and at known rows we
inject a covariate shift (features move) or a label change (the label's relation to the
features changes). All four datasets ship inside the River wheel; nothing is downloaded.
"""

from __future__ import annotations

import random
import statistics
from typing import Any, Callable, Iterable

from river import compose, datasets, linear_model, preprocessing

from bench.detection.attacks import HOUR_MS, Attack
from bench.detection.traffic import T0, Scenario

FEEDBACK_DELAY_MS = 60_000
Row = tuple[dict[str, float], bool]


def _rows(dataset: Iterable[tuple[dict[str, Any], Any]], positive: Callable[[Any], bool], seed: int,
          limit: int | None) -> list[Row]:
    rows = [({name: float(value) for name, value in x.items()}, positive(y)) for x, y in dataset]
    random.Random(seed).shuffle(rows)
    return rows[:limit] if limit else rows


def _shift(rows: list[Row], start: int, end: int, features: tuple[str, ...], sds: float) -> None:
    """Covariate shift: ``features`` move by ``sds`` of their own spread on rows [start, end)."""
    for feature in features:
        spread = statistics.pstdev(x[feature] for x, _ in rows[:start]) or 1.0
        for x, _ in rows[start:end]:
            x[feature] += sds * spread


def _relabel(rows: list[Row], start: int, end: int, share: float, seed: int) -> None:
    """Label change: a ``share`` of labels on rows [start, end) flip (features untouched)."""
    rng = random.Random(seed)
    for index in range(start, end):
        if rng.random() < share:
            x, y = rows[index]
            rows[index] = (x, not y)


def _stream(name: str, rows: list[Row], attacks: list[Attack], description: str) -> Scenario:
    model_id = f"river-{name.lower()}"
    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    timed: list[tuple[int, int, dict[str, Any]]] = []
    for index, (x, y) in enumerate(rows):
        ts = T0 + index * 1000
        score = round(model.predict_proba_one(x).get(True, 0.0), 5)
        event = {"event_id": f"{model_id}-{index}", "ts": ts, "model_id": model_id, "model_version": "v1",
                 "principal": "svc-real", "segment": {}, "features": x,
                 "prediction": "positive" if score >= 0.5 else "negative", "score": score, "label": None}
        timed.append((ts, 2 * index, {"type": "prediction", "event": event}))
        feedback = {**event, "ts": ts + FEEDBACK_DELAY_MS, "features": {}, "prediction": None, "score": None,
                    "label": "positive" if y else "negative"}
        timed.append((ts + FEEDBACK_DELAY_MS, 2 * index + 1, {"type": "prediction", "event": feedback}))
        model.learn_one(x, y)
    timed.sort(key=lambda item: (item[0], item[1]))
    end_ms = T0 + len(rows) * 1000 + FEEDBACK_DELAY_MS
    return Scenario(f"real-{name.lower()}", description, T0, end_ms, [r for _, _, r in timed], attacks)


def _attack(name: str, attack_id: str, kind: str, row: int, until_row: int, size: str, description: str) -> Attack:
    start = T0 + row * 1000
    max_delay = min((until_row - row) * 1000, 2 * HOUR_MS)
    return Attack(attack_id, kind, start, T0 + until_row * 1000, {"model_id": f"river-{name.lower()}"}, "abrupt",
                  size, max_delay, description, aftermath_ms=2 * HOUR_MS)


def phishing() -> Scenario:
    rows = _rows(datasets.Phishing(), bool, 1, None)
    half = len(rows) // 2
    _relabel(rows, half, len(rows), 1.0, 1)
    attack = _attack("Phishing", "phishing-label-flip", "concept_drift", half, len(rows), "large",
                     "every label inverted from the middle on")
    return _stream("Phishing", rows, [attack], f"Phishing ({len(rows)} rows): label change at row {half}")


def bananas() -> Scenario:
    rows = _rows(datasets.Bananas(), bool, 2, None)
    half = len(rows) // 2
    _shift(rows, half, len(rows), ("1",), 1.0)
    attack = _attack("Bananas", "bananas-covariate", "feature_drift", half, len(rows), "large",
                     "feature 1 moves by one standard deviation")
    return _stream("Bananas", rows, [attack], f"Bananas ({len(rows)} rows): covariate shift at row {half}")


def image_segments() -> Scenario:
    rows = _rows(datasets.ImageSegments(), lambda label: label == "sky", 3, None)
    half = len(rows) // 2
    _shift(rows, half, len(rows), ("intensity-mean", "rawred-mean", "rawblue-mean", "rawgreen-mean"), 0.5)
    attack = _attack("ImageSegments", "segments-brightness", "feature_drift", half, len(rows), "small",
                     "image brightness features move by half a standard deviation (sky vs rest)")
    return _stream("ImageSegments", rows, [attack], f"ImageSegments ({len(rows)} rows): covariate shift at {half}")


def shuttle(limit: int | None) -> Scenario:
    rows = _rows(datasets.Shuttle(), lambda label: label != 1, 4, limit)
    covariate_at, relabel_at = int(len(rows) * 0.4), int(len(rows) * 0.75)
    _shift(rows, covariate_at, relabel_at, ("f1",), 1.5)
    _relabel(rows, relabel_at, len(rows), 0.3, 4)
    attacks = [
        _attack("Shuttle", "shuttle-covariate", "feature_drift", covariate_at, relabel_at, "large",
                "f1 moves by 1.5 standard deviations (anomaly vs normal)"),
        _attack("Shuttle", "shuttle-label-change", "concept_drift", relabel_at, len(rows), "small",
                "30% of labels flip"),
    ]
    return _stream("Shuttle", rows, attacks,
                   f"Shuttle ({len(rows)} rows): covariate shift at {covariate_at}, label change at {relabel_at}")


def real_scenarios(quick: bool = False) -> Iterable[Scenario]:
    yield phishing()
    yield bananas()
    yield image_segments()
    yield shuttle(12_000 if quick else None)
