"""Seeded synthetic traffic in the replay format, with hooks through which attacks are injected.

Healthy traffic:
four models with different volumes and a daily rhythm, segments including a noisy
low-volume one (region LATAM), delayed feedback for a third of predictions, services and
partners querying endpoints every minute, engineers downloading artifacts now and then
(some denied), and signed training-data appends every 20 minutes with a nightly backfill
twice the usual size. Injections change that traffic through a few hooks (score offset,
feature shift, concept flip, canary routing) or add their own records (bursts, poisoned
appends). The attack catalogue and scenarios live in ``bench.detection.scenarios``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from bench.detection.attacks import HOUR_MS, MINUTE_MS, Attack

T0 = 1_796_083_200_000  # 2026-12-01T00:00:00Z
DAY_MS = 24 * HOUR_MS
Record = dict[str, Any]
Timed = tuple[int, Record]

REGIONS = (("EU", 0.35), ("US", 0.35), ("APAC", 0.27), ("LATAM", 0.03))
DEVICES = (("android", 0.40), ("ios", 0.35), ("web", 0.25))
ACCOUNT_AGES = (("new", 0.3), ("established", 0.7))
FEATURES = ("amount", "account_days", "txn_last_24h", "risk_index", "session_len")
# How a shift of 1.0 (in standard deviations) moves each raw feature.
_FEATURE_SCALE = {"amount": 1.0, "account_days": 866.0, "txn_last_24h": 6.0, "risk_index": 1.0, "session_len": 40.0}
ENGINEERS = tuple(f"eng-{index:02d}" for index in range(12))
PARTNERS = ("partner-a", "partner-b")
HIGH_IMPACT_ARTIFACTS = ("credit:v7", "fraud:v3")
ARTIFACTS = HIGH_IMPACT_ARTIFACTS + ("ranker:v12", "churn:v2", "fraud:v2", "embeddings:v4")


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    version: str
    share: float
    service: str
    bias: float
    # weights on standardized amount, account_days, txn_last_24h, risk_index (session_len: none)
    weights: tuple[float, float, float, float]


MODELS = (
    ModelSpec("credit", "v7", 0.45, "svc-loans", -1.2, (0.8, -0.6, 0.5, 1.2)),
    ModelSpec("fraud", "v3", 0.30, "svc-checkout", -2.0, (1.0, -0.4, 0.8, 1.5)),
    ModelSpec("ranker", "v12", 0.17, "svc-feed", -0.6, (0.3, 0.2, 0.9, 0.7)),
    ModelSpec("churn", "v2", 0.08, "svc-support", -1.5, (0.2, -1.0, 0.4, 1.0)),
)
DATASETS = {  # name -> (labels, share of the first label, consuming models)
    "fraud-train": (("fraud", "legit"), 0.03, ("fraud",)),
    "credit-train": (("default", "repaid"), 0.12, ("credit",)),
    "ranker-clicks": (("click", "skip"), 0.30, ("ranker",)),
    "churn-train": (("churn", "stay"), 0.08, ("churn",)),
}


@dataclass(frozen=True)
class TrafficConfig:
    seed: int
    duration_s: int
    start_ms: int = T0
    predictions_per_s: float = 2.0
    feedback_fraction: float = 0.3
    feedback_delay_s: tuple[int, int] = (60, 300)
    data_change_every_s: int = 1200


@dataclass
class Injection:
    """One attack's effect on the traffic; hooks default to "no effect"."""

    attack: Attack
    logit_offset: Callable[[str, str, int], float] = lambda model, version, ts: 0.0
    feature_shift: Callable[[str, str, int], Mapping[str, float]] = lambda model, version, ts: {}
    # probability that a label comes from the flipped concept
    concept_flip: Callable[[str, str, Mapping[str, str], int], float] = lambda model, version, segment, ts: 0.0
    extra_records: Callable[["TrafficGenerator"], Iterator[Timed]] = lambda traffic: iter(())
    canary: "Canary | None" = None


@dataclass(frozen=True)
class Canary:
    model_id: str
    version: str
    start_ts: int
    share: float
    weight_noise: float  # the canary's weights are the old ones plus this much error


@dataclass
class Scenario:
    name: str
    description: str
    start_ms: int
    end_ms: int
    records: list[Record] = field(default_factory=list)
    attacks: list[Attack] = field(default_factory=list)

    @property
    def days(self) -> float:
        return (self.end_ms - self.start_ms) / DAY_MS


# ---------------------------------------------------------------------------------------
# Healthy traffic


def daily_factor(ts_ms: int) -> float:
    """Busiest mid-afternoon UTC, quietest at night (between 0.5 and 1.5)."""
    hour = (ts_ms / HOUR_MS) % 24
    return 1.0 + 0.5 * math.sin((hour - 9) / 24 * 2 * math.pi)


def ramp(start_ts: int, ramp_ms: int, ts: int) -> float:
    """0 before ``start_ts``, rising linearly to 1 over ``ramp_ms`` (a step when ``ramp_ms`` is 0)."""
    if ts < start_ts:
        return 0.0
    return 1.0 if ramp_ms <= 0 else min(1.0, (ts - start_ts) / ramp_ms)


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    roll = rng.random()
    for value, weight in weighted:
        roll -= weight
        if roll <= 0:
            return value
    return weighted[-1][0]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, x))))


def draw_features(rng: random.Random, shift: Mapping[str, float]) -> dict[str, float]:
    amount = rng.lognormvariate(3.5 + shift.get("amount", 0.0), 1.0)
    return {
        "amount": round(amount, 2),
        "account_days": float(rng.randint(1, 3000)) + shift.get("account_days", 0.0) * 866.0,
        "txn_last_24h": float(rng.randint(0, 20)) + shift.get("txn_last_24h", 0.0) * 6.0,
        "risk_index": round(rng.gauss(shift.get("risk_index", 0.0), 1.0), 4),
        "session_len": round(max(0.0, rng.gauss(120.0 + shift.get("session_len", 0.0) * 40.0, 40.0)), 1),
    }


def standardized(features: Mapping[str, float]) -> tuple[float, float, float, float]:
    return (
        math.log(max(features["amount"], 0.01)) - 3.5,
        (features["account_days"] - 1500.0) / 866.0,
        (features["txn_last_24h"] - 10.0) / 6.0,
        features["risk_index"],
    )


def _dot(weights: Sequence[float], z: Sequence[float]) -> float:
    return sum(w * x for w, x in zip(weights, z))


def _flipped(weights: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The concept after drift: amount and risk matter the other way round."""
    return (-weights[0], weights[1], weights[2], -weights[3])


class TrafficGenerator:
    """Healthy traffic for ``config`` with ``injections`` applied; deterministic per seed."""

    def __init__(self, config: TrafficConfig, injections: Sequence[Injection] = ()) -> None:
        self.config = config
        self.injections = list(injections)
        self.rng = random.Random(config.seed)
        self.end_ms = config.start_ms + config.duration_s * 1000
        self._serial = 0
        self.hashes: dict[str, list[str]] = {name: [] for name in DATASETS}  # content hashes seen, per dataset

    def _next_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-{self.config.seed}-{self._serial}"

    def records(self) -> list[Record]:
        timed: list[tuple[int, int, Record]] = []
        sources: list[Iterator[Timed]] = [self._predictions(), self._accesses(), self._data_changes()]
        sources += [injection.extra_records(self) for injection in self.injections]
        for source in sources:
            for ts, record in source:
                if self.config.start_ms <= ts < self.end_ms:
                    timed.append((ts, len(timed), record))
        timed.sort(key=lambda item: (item[0], item[1]))
        return [record for _, _, record in timed]

    # predictions -------------------------------------------------------------------------

    def _predictions(self) -> Iterator[Timed]:
        rng, config = self.rng, self.config
        ts = float(config.start_ms)
        shares = [(str(index), spec.share) for index, spec in enumerate(MODELS)]
        while True:
            ts += rng.expovariate(config.predictions_per_s * daily_factor(int(ts))) * 1000
            if ts >= self.end_ms:
                return
            spec = MODELS[int(_pick(rng, shares))]
            principal = spec.service if rng.random() > 0.02 else rng.choice(PARTNERS)
            yield from self.prediction(spec, int(ts), principal)

    def prediction(self, spec: ModelSpec, ts: int, principal: str,
                   features: Mapping[str, float] | None = None, logit: float | None = None) -> Iterator[Timed]:
        """One prediction (and maybe its delayed feedback) from ``spec`` under the injections."""
        rng = self.rng
        version, weights = self._route(spec, ts)
        segment = {"region": _pick(rng, REGIONS), "device": _pick(rng, DEVICES), "account_age": _pick(rng, ACCOUNT_AGES)}
        if features is None:
            shift: dict[str, float] = {}
            for injection in self.injections:
                for name, amount in injection.feature_shift(spec.model_id, version, ts).items():
                    shift[name] = shift.get(name, 0.0) + amount
            features = draw_features(rng, shift)
        z = standardized(features)
        noise = 1.0 if segment["region"] == "LATAM" else 0.3
        offset = sum(injection.logit_offset(spec.model_id, version, ts) for injection in self.injections)
        model_logit = spec.bias + _dot(weights, z) if logit is None else logit
        score = round(_sigmoid(model_logit + offset + rng.gauss(0.0, noise)), 5)
        event_id = self._next_id("p")
        event = {
            "event_id": event_id, "ts": ts, "model_id": spec.model_id, "model_version": version,
            "principal": principal, "segment": segment, "features": dict(features),
            "prediction": "positive" if score >= 0.5 else "negative", "score": score, "label": None,
        }
        yield ts, {"type": "prediction", "event": event}
        if rng.random() < self.config.feedback_fraction:
            flip = max((i.concept_flip(spec.model_id, version, segment, ts) for i in self.injections), default=0.0)
            true_weights = _flipped(spec.weights) if rng.random() < flip else spec.weights
            label = "positive" if rng.random() < _sigmoid(spec.bias + _dot(true_weights, z)) else "negative"
            low, high = self.config.feedback_delay_s
            feedback_ts = ts + int(rng.uniform(low, high) * 1000)
            yield feedback_ts, {"type": "prediction", "event": {
                **event, "ts": feedback_ts, "features": {}, "prediction": None, "score": None, "label": label}}

    def _route(self, spec: ModelSpec, ts: int) -> tuple[str, tuple[float, float, float, float]]:
        for injection in self.injections:
            canary = injection.canary
            if canary and canary.model_id == spec.model_id and ts >= canary.start_ts and self.rng.random() < canary.share:
                worse = [w + canary.weight_noise * (-1) ** index for index, w in enumerate(spec.weights)]
                return canary.version, (worse[0], worse[1], worse[2], worse[3])
        return spec.version, spec.weights

    # access -------------------------------------------------------------------------------

    def _accesses(self) -> Iterator[Timed]:
        rng, config = self.rng, self.config
        for minute in range(config.duration_s // 60):
            minute_ms = config.start_ms + minute * MINUTE_MS
            for spec in MODELS:  # each service reports its endpoint queries once a minute
                ts = minute_ms + rng.randint(0, 59_999)
                count = max(1, int(rng.gauss(daily_factor(ts) * 600 * spec.share, 20.0)))
                yield ts, self.access(ts, spec.service, "query", "endpoint", f"{spec.model_id}-api", count=count,
                                      byte_count=count * 900)
            for partner in PARTNERS:  # low-volume, noisy: a few queries, some minutes none
                count = _poisson(rng, 3.0)
                if count:
                    ts = minute_ms + rng.randint(0, 59_999)
                    yield ts, self.access(ts, partner, "query", "endpoint", "credit-api", count=count,
                                          byte_count=count * 900)
            yield from self._engineer_downloads(minute_ms)

    def _engineer_downloads(self, minute_ms: int) -> Iterator[Timed]:
        rng = self.rng
        for engineer in ENGINEERS + ("contractor-17",):
            if rng.random() < (0.03 if engineer != "contractor-17" else 0.003):
                ts = minute_ms + rng.randint(0, 59_999)
                artifact = rng.choice(ARTIFACTS)
                outcome = "denied" if rng.random() < 0.02 else "success"  # a stale token now and then
                yield ts, self.access(ts, engineer, "download", "model", artifact, outcome=outcome,
                                      byte_count=rng.randint(40, 400) * 1_000_000)

    def access(self, ts: int, principal: str, action: str, resource_type: str, resource: str, count: int = 1,
               byte_count: int = 0, outcome: str = "success", source_ip: str | None = None) -> Record:
        attributes = {"impact": "high"} if resource in HIGH_IMPACT_ARTIFACTS else {}
        return {"type": "access", "event": {
            "event_id": self._next_id("a"), "ts": ts, "principal": principal, "action": action,
            "resource_type": resource_type, "resource": resource, "bytes": byte_count if outcome == "success" else 0,
            "count": count, "outcome": outcome, "source_ip": source_ip or f"10.0.{sum(principal.encode()) % 250}.10",
            "attributes": attributes}}

    # data changes -------------------------------------------------------------------------

    def _data_changes(self) -> Iterator[Timed]:
        config = self.config
        for step in range(config.duration_s // config.data_change_every_s):
            for offset, dataset in enumerate(DATASETS):
                ts = config.start_ms + step * config.data_change_every_s * 1000 + offset * 7_000
                ts += self.rng.randint(0, 5_000)
                yield ts, self.data_change(ts, dataset, f"v{step + 1}")

    def data_change(self, ts: int, dataset: str, version: str, **overrides: Any) -> Record:
        """A healthy signed append (a nightly backfill at 02:00 UTC is twice the size); ``overrides`` poison it."""
        rng = self.rng
        labels, share, consumers = DATASETS[dataset]
        backfill = 2 if int(ts / HOUR_MS) % 24 == 2 else 1
        rows = int(overrides.pop("rows", rng.randint(4000, 6000) * backfill))
        share = overrides.pop("share", share)
        first = int(rows * min(1.0, max(0.0, rng.gauss(share, share * 0.08))))
        digest = f"sha256:{rng.getrandbits(128):032x}"
        self.hashes[dataset].append(digest)
        event = {
            "event_id": self._next_id("d"), "ts": ts, "dataset": dataset, "version": version, "source": "etl-nightly",
            "actor": "svc-etl", "change": "append", "rows": rows,
            "label_counts": {labels[0]: first, labels[1]: rows - first}, "content_hash": digest,
            "expected_hash": digest, "approved_by": "data-steward", "consumers": list(consumers),
        }
        event.update(overrides)
        return {"type": "data_change", "event": event}


def _poisson(rng: random.Random, mean: float) -> int:
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count
