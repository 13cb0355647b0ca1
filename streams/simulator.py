"""A seeded traffic simulator: realistic ML-system events with attacks at known moments.

Produces records in the replay format (``{"type": ..., "event": {...}}``) in event-time
order. Healthy traffic: three models scoring requests from segmented customers with a
daily rhythm, delayed ground-truth feedback, services querying endpoints, engineers now
and then downloading artifacts, and regular signed training-data appends. Attacks:

* ``prediction_drift`` - the scores of ``credit:v7`` shift upward (adversarial inputs or
  an upstream feature break);
* ``download_burst`` - principal ``contractor-17`` pulls model artifacts in bulk (theft);
* ``label_shift`` - a poisoned, unapproved append to ``fraud-train`` flips many labels;
* ``prediction_drift`` of ``fraud:v3`` five minutes later: the model that trains on
  ``fraud-train`` online starts scoring higher (one case with the poisoned append).

Deploy events (``action=deploy`` with the artifact hash) open the run for every model
version, and after the download burst the thief queries the fraud endpoint in bulk (the
extraction half of "theft then extraction", for a query-burst detector to catch).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

MODELS = (("fraud", "v3"), ("credit", "v7"), ("ranker", "v12"))
REGIONS = ("EU", "US", "APAC")
DEVICES = ("android", "ios", "web")
ACCOUNT_AGES = ("new", "established")
DATASETS = {
    "fraud-train": (("fraud", "legit"), (0.03, 0.97), ("fraud",)),
    "credit-train": (("default", "repaid"), (0.12, 0.88), ("credit",)),
    "ranker-clicks": (("click", "skip"), (0.30, 0.70), ("ranker",)),
}
ENGINEERS = tuple(f"eng-{index:02d}" for index in range(12))
SERVICES = tuple(f"svc-{name}" for name in ("checkout", "loans", "feed", "search", "support"))
THIEF = "contractor-17"
ARTIFACTS = tuple(f"{model}:{version}" for model, version in MODELS) + ("fraud:v2", "credit:v6", "embeddings:v4")


@dataclass(frozen=True)
class InjectedAttack:
    """Ground truth for one injected attack."""

    kind: str
    starts_at: int
    subject: str
    description: str


@dataclass
class Scenario:
    records: list[dict[str, Any]] = field(default_factory=list)
    attacks: list[InjectedAttack] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for record in self.records:
            totals[record["type"]] = totals.get(record["type"], 0) + 1
        return totals


@dataclass(frozen=True)
class SimulationConfig:
    seed: int = 7
    start_ms: int = 1_796_083_200_000  # 2026-12-01T00:00:00Z
    duration_s: int = 3 * 3600
    predictions_per_s: float = 3.0
    feedback_fraction: float = 0.3
    feedback_delay_s: int = 600
    download_burst_at_s: int = 3600
    score_drift_at_s: int = 5400
    poison_at_s: int = 7800
    fraud_drift_after_poison_s: int = 300
    extraction_after_burst_s: int = 600


def simulate(config: SimulationConfig = SimulationConfig()) -> Scenario:
    """Generate the whole scenario, sorted by event time (stable for equal timestamps)."""
    rng = random.Random(config.seed)
    records: list[tuple[int, int, dict[str, Any]]] = []
    sequence = 0
    streams = (("prediction", _predictions), ("access", _accesses), ("data_change", _data_changes))
    for event_type, generator in streams:
        for ts, record in generator(rng, config):
            wrapped = record if event_type == "prediction" else {"type": event_type, "event": record}
            records.append((ts, sequence, wrapped))
            sequence += 1
    records.sort(key=lambda item: (item[0], item[1]))
    return Scenario([record for _, _, record in records], _attacks(config))


def _attacks(config: SimulationConfig) -> list[InjectedAttack]:
    at = config.start_ms
    return [
        InjectedAttack("download_burst", at + config.download_burst_at_s * 1000, f"principal={THIEF}",
                       f"{THIEF} downloads model artifacts in bulk (about 3 per second for 2 minutes)"),
        InjectedAttack("query_burst", at + (config.download_burst_at_s + config.extraction_after_burst_s) * 1000,
                       f"principal={THIEF}", f"{THIEF} then queries the fraud endpoint about 6,000 times a minute"),
        InjectedAttack("prediction_drift", at + config.score_drift_at_s * 1000, "model=credit:v7",
                       "scores of credit:v7 shift upward by about 0.3 for every segment"),
        InjectedAttack("label_shift", at + config.poison_at_s * 1000, "dataset=fraud-train",
                       "an unapproved append to fraud-train from vendor-upload relabels 40% of rows as fraud"),
        InjectedAttack("prediction_drift", at + (config.poison_at_s + config.fraud_drift_after_poison_s) * 1000,
                       "model=fraud:v3", "fraud:v3, updated online from the poisoned fraud-train, scores higher"),
    ]


def _daily_rate(ts_ms: int, base: float) -> float:
    """Traffic follows the clock: busiest mid-afternoon UTC, quietest at night."""
    hour = (ts_ms / 3_600_000) % 24
    return base * (1.0 + 0.5 * math.sin((hour - 9) / 24 * 2 * math.pi))


def _predictions(rng: random.Random, config: SimulationConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    ts = float(config.start_ms)
    end = config.start_ms + config.duration_s * 1000
    drift_at = config.start_ms + config.score_drift_at_s * 1000
    fraud_drift_at = config.start_ms + (config.poison_at_s + config.fraud_drift_after_poison_s) * 1000
    counter = 0
    while True:
        ts += rng.expovariate(_daily_rate(int(ts), config.predictions_per_s)) * 1000
        if ts >= end:
            return
        counter += 1
        model_id, version = MODELS[counter % len(MODELS)]
        drifted = (model_id == "credit" and ts >= drift_at) or (model_id == "fraud" and ts >= fraud_drift_at)
        event = _prediction_event(rng, f"p-{config.seed}-{counter}", int(ts), model_id, version, drifted)
        yield int(ts), {"type": "prediction", "event": event}
        if rng.random() < config.feedback_fraction:
            feedback_ts = int(ts) + int(rng.uniform(0.5, 1.5) * config.feedback_delay_s * 1000)
            if feedback_ts < end:
                yield feedback_ts, {"type": "prediction", "event": _feedback(rng, event, feedback_ts)}


def _prediction_event(rng: random.Random, event_id: str, ts: int, model_id: str, version: str,
                      drifted: bool) -> dict[str, Any]:
    segment = {"region": rng.choice(REGIONS), "device": rng.choice(DEVICES), "account_age": rng.choice(ACCOUNT_AGES)}
    amount = rng.lognormvariate(3.5, 1.0)
    features = {"amount": round(amount, 2), "account_days": float(rng.randint(1, 3000)),
                "txn_last_24h": float(rng.randint(0, 20)), "risk_index": round(rng.gauss(0.0, 1.0), 4)}
    alpha, beta = (5.0, 3.0) if drifted else (2.0, 5.0)
    score = min(max(rng.betavariate(alpha, beta), 0.0), 1.0)
    return {
        "event_id": event_id, "ts": ts, "model_id": model_id, "model_version": version,
        "principal": rng.choice(SERVICES), "segment": segment, "features": features,
        "prediction": "positive" if score >= 0.5 else "negative", "score": round(score, 5), "label": None,
    }


def _feedback(rng: random.Random, prediction: dict[str, Any], ts: int) -> dict[str, Any]:
    score = prediction["score"]
    label = "positive" if rng.random() < score else "negative"
    return {
        "event_id": prediction["event_id"], "ts": ts, "model_id": prediction["model_id"],
        "model_version": prediction["model_version"], "principal": prediction["principal"],
        "segment": prediction["segment"], "features": {}, "prediction": None, "score": None, "label": label,
    }


def _accesses(rng: random.Random, config: SimulationConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    counter = 0
    for minute in range(config.duration_s // 60):
        minute_ms = config.start_ms + minute * 60_000
        for service in SERVICES:  # each service reports its endpoint queries once a minute
            counter += 1
            ts = minute_ms + rng.randint(0, 59_999)
            count = max(1, int(rng.gauss(_daily_rate(ts, 120.0), 15.0)))
            yield ts, _access(f"a-{config.seed}-{counter}", ts, service, "query", "endpoint",
                              f"{rng.choice(MODELS)[0]}-api", count=count, byte_count=count * 900)
        for engineer in ENGINEERS:  # engineers download an artifact now and then
            if rng.random() < 0.04:
                counter += 1
                ts = minute_ms + rng.randint(0, 59_999)
                artifact = rng.choice(ARTIFACTS)
                yield ts, _access(f"a-{config.seed}-{counter}", ts, engineer, "download", "model", artifact,
                                  byte_count=rng.randint(40, 400) * 1_000_000)
    yield from _download_burst(rng, config, counter)
    side = random.Random(config.seed * 7_919 + 1)  # its own stream: the healthy traffic above stays unchanged
    yield from _deploys(side, config)
    yield from _extraction(side, config)


def _deploys(rng: random.Random, config: SimulationConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, (model_id, version) in enumerate(MODELS):
        ts = config.start_ms + 1_000 * (index + 1)
        event = _access(f"deploy-{config.seed}-{model_id}-{version}", ts, "release-bot", "deploy", "model",
                        f"{model_id}:{version}")
        event["attributes"] = {"artifact_hash": f"sha256:{rng.getrandbits(128):032x}"}
        yield ts, event


def _extraction(rng: random.Random, config: SimulationConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    start = config.start_ms + (config.download_burst_at_s + config.extraction_after_burst_s) * 1000
    for step in range(240):  # every 0.5 s a gateway record of 50 queries: ~6,000 a minute for two minutes
        ts = start + step * 500 + rng.randint(0, 40)
        yield ts, _access(f"x-{config.seed}-{step}", ts, THIEF, "query", "endpoint", "fraud-api", count=50,
                          byte_count=50 * 900, source_ip="203.0.113.77")


def _download_burst(rng: random.Random, config: SimulationConfig, counter: int) -> Iterator[tuple[int, dict[str, Any]]]:
    burst_start = config.start_ms + config.download_burst_at_s * 1000
    for step in range(360):  # about 3 downloads a second for two minutes
        counter += 1
        ts = burst_start + step * 333 + rng.randint(0, 50)
        yield ts, _access(f"a-{config.seed}-{counter}", ts, THIEF, "download", "model",
                          ARTIFACTS[step % len(ARTIFACTS)], byte_count=rng.randint(40, 400) * 1_000_000,
                          source_ip="203.0.113.77")


def _access(event_id: str, ts: int, principal: str, action: str, resource_type: str, resource: str,
            count: int = 1, byte_count: int = 0, source_ip: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id, "ts": ts, "principal": principal, "action": action,
        "resource_type": resource_type, "resource": resource, "bytes": byte_count, "count": count,
        "outcome": "success", "source_ip": source_ip or f"10.0.{hash_octet(principal)}.10", "attributes": {},
    }


def hash_octet(text: str) -> int:
    """A stable small number from text (never Python's salted ``hash``)."""
    return sum(text.encode()) % 250


def _data_changes(rng: random.Random, config: SimulationConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    counter = 0
    poison_at = config.start_ms + config.poison_at_s * 1000
    for step in range(config.duration_s // 600):  # every dataset gets an append every 10 minutes
        for offset, (dataset, (labels, shares, consumers)) in enumerate(DATASETS.items()):
            counter += 1
            ts = config.start_ms + step * 600_000 + offset * 7_000 + rng.randint(0, 5_000)
            yield ts, _data_change(rng, f"d-{config.seed}-{counter}", ts, dataset, step, labels, shares, consumers)
    poison_labels, _, poison_consumers = DATASETS["fraud-train"]
    yield poison_at, _poisoned_change(rng, f"d-{config.seed}-poison", poison_at, poison_labels, poison_consumers)


def _data_change(rng: random.Random, event_id: str, ts: int, dataset: str, step: int,
                 labels: tuple[str, ...], shares: tuple[float, ...], consumers: tuple[str, ...]) -> dict[str, Any]:
    rows = rng.randint(4000, 6000)
    first = int(rows * max(0.0, rng.gauss(shares[0], shares[0] * 0.08)))
    digest = f"sha256:{rng.getrandbits(128):032x}"
    return {
        "event_id": event_id, "ts": ts, "dataset": dataset, "version": f"v{step + 1}", "source": "etl-nightly",
        "actor": "svc-etl", "change": "append", "rows": rows, "label_counts": {labels[0]: first, labels[1]: rows - first},
        "content_hash": digest, "expected_hash": digest, "approved_by": "data-steward", "consumers": list(consumers),
    }


def _poisoned_change(rng: random.Random, event_id: str, ts: int, labels: tuple[str, ...],
                     consumers: tuple[str, ...]) -> dict[str, Any]:
    rows = 5200
    digest = f"sha256:{rng.getrandbits(128):032x}"
    return {
        "event_id": event_id, "ts": ts, "dataset": "fraud-train", "version": "v-hotfix-1", "source": "vendor-upload",
        "actor": "mallory", "change": "append", "rows": rows,
        "label_counts": {labels[0]: int(rows * 0.42), labels[1]: rows - int(rows * 0.42)},
        "content_hash": digest, "expected_hash": digest, "approved_by": None, "consumers": list(consumers),
    }
