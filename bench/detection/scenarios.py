"""Labeled scenarios: every attack issue 3 lists, injected at known times into seeded traffic.

Each scenario is replay-format records in event-time order plus its ``Attack`` ground
truth. Attacks start after at least two hours of healthy traffic (the detectors' warm-up)
and are spaced so their detection windows never overlap on the same subject. ``clean``
is several days of healthy traffic only: every incident on it is a false alarm. Real data
(River's bundled datasets) comes from ``bench.detection.real_data``.
"""

from __future__ import annotations

from typing import Callable, Iterator

from bench.detection.attacks import HOUR_MS, MINUTE_MS, Attack
from bench.detection.traffic import (
    ARTIFACTS, DAY_MS, MODELS, T0, Canary, Injection, Scenario, Timed, TrafficConfig, TrafficGenerator, ramp,
)

_SPECS = {spec.model_id: spec for spec in MODELS}
# Model-quality changes keep echoing (errors revealed by late labels): same-family incidents
# about the attacked model this long after the change are late, not false.
AFTERMATH_MS = 2 * HOUR_MS


def _model(model_id: str, version: str | None = None) -> dict[str, str]:
    return {"model_id": model_id, "model_version": version or _SPECS[model_id].version}


def _at(hours: float) -> int:
    return T0 + int(hours * HOUR_MS)


# --- model quality -----------------------------------------------------------------------

def score_drift(attack_id: str, model_id: str, hours: float, offset: float, ramp_h: float = 0.0,
                size: str = "large") -> Injection:
    start, ramp_ms = _at(hours), int(ramp_h * HOUR_MS)
    attack = Attack(attack_id, "prediction_drift", start, start + ramp_ms, _model(model_id),
                    "gradual" if ramp_ms else "abrupt", size, ramp_ms + 30 * MINUTE_MS,
                    f"{model_id} scores: logit offset {offset:+} ({'ramp over %gh' % ramp_h if ramp_ms else 'step'})",
                    aftermath_ms=AFTERMATH_MS)
    return Injection(attack, logit_offset=lambda m, v, ts: offset * ramp(start, ramp_ms, ts) if m == model_id else 0.0)


def feature_drift(attack_id: str, model_id: str, feature: str, hours: float, shift: float, ramp_h: float = 0.0,
                  size: str = "large") -> Injection:
    start, ramp_ms = _at(hours), int(ramp_h * HOUR_MS)
    attack = Attack(attack_id, "feature_drift", start, start + ramp_ms, _model(model_id),
                    "gradual" if ramp_ms else "abrupt", size, ramp_ms + 30 * MINUTE_MS,
                    f"{model_id}.{feature} shifts by {shift:+} sd ({'ramp over %gh' % ramp_h if ramp_ms else 'step'})",
                    aftermath_ms=AFTERMATH_MS)
    return Injection(attack, feature_shift=lambda m, v, ts: {feature: shift * ramp(start, ramp_ms, ts)}
                     if m == model_id else {})


def concept_drift(attack_id: str, model_id: str, hours: float, share: float, ramp_h: float = 0.0,
                  size: str = "large") -> Injection:
    start, ramp_ms = _at(hours), int(ramp_h * HOUR_MS)
    attack = Attack(attack_id, "concept_drift", start, start + ramp_ms, _model(model_id),
                    "gradual" if ramp_ms else "abrupt", size, ramp_ms + 2 * HOUR_MS,
                    f"{model_id}: {share:.0%} of labels follow a flipped concept (inputs and scores unchanged)",
                    aftermath_ms=AFTERMATH_MS)
    return Injection(attack, concept_flip=lambda m, v, seg, ts: share * ramp(start, ramp_ms, ts)
                     if m == model_id else 0.0)


def segment_degradation(attack_id: str, model_id: str, segment: dict[str, str], hours: float,
                        size: str = "large") -> Injection:
    start = _at(hours)
    attack = Attack(attack_id, "segment_degradation", start, start, {**_model(model_id), "segment": segment},
                    "abrupt", size, 3 * HOUR_MS,
                    f"{model_id}: labels in segment {segment} follow a flipped concept; other segments unchanged",
                    aftermath_ms=AFTERMATH_MS)

    def flip(m: str, v: str, seg: object, ts: int) -> float:
        inside = isinstance(seg, dict) and all(seg.get(k) == val for k, val in segment.items())
        return 1.0 if m == model_id and inside and ts >= start else 0.0

    return Injection(attack, concept_flip=flip)


def canary_regression(attack_id: str, model_id: str, version: str, hours: float, weight_noise: float) -> Injection:
    start = _at(hours)
    attack = Attack(attack_id, "canary_regression", start, start, _model(model_id, version), "abrupt", "large",
                    2 * HOUR_MS, f"{model_id}:{version} takes 20% of traffic beside "
                                 f"{_SPECS[model_id].version}; its weights are off by {weight_noise}",
                    aftermath_ms=AFTERMATH_MS)
    return Injection(attack, canary=Canary(model_id, version, start, 0.2, weight_noise))


# --- misuse ------------------------------------------------------------------------------

def input_anomaly(attack_id: str, principal: str, model_id: str, hours: float, minutes: int) -> Injection:
    start, end = _at(hours), _at(hours) + minutes * MINUTE_MS
    attack = Attack(attack_id, "input_anomaly", start, end, {"principal": principal}, "abrupt", "large",
                    30 * MINUTE_MS, f"{principal} sends {model_id} inputs far outside anything seen (one every 10 s)",
                    collateral=(("feature_drift", _model(model_id)),))

    def records(traffic: TrafficGenerator) -> Iterator[Timed]:
        rng = traffic.rng
        for ts in range(start, end, 10_000):
            features = {"amount": round(rng.uniform(5e4, 9e4), 2), "account_days": -float(rng.randint(1, 50)),
                        "txn_last_24h": float(rng.randint(300, 900)), "risk_index": round(rng.uniform(7, 9), 4),
                        "session_len": 0.0}
            yield from traffic.prediction(_SPECS[model_id], ts + rng.randint(0, 9_999), principal, features)

    return Injection(attack, extra_records=records)


def query_burst(attack_id: str, principal: str, hours: float, minutes: int, per_minute: int,
                size: str = "large") -> Injection:
    """Extraction: many queries, and predictions that sweep ``amount`` with scores near the boundary."""
    start, end = _at(hours), _at(hours) + minutes * MINUTE_MS
    attack = Attack(attack_id, "query_burst", start, end, {"principal": principal}, "abrupt", size, 30 * MINUTE_MS,
                    f"{principal}: {per_minute} queries/min for {minutes} min (usual ~3) sweeping credit.amount",
                    collateral=(("prediction_drift", _model("credit")), ("feature_drift", _model("credit"))))

    def records(traffic: TrafficGenerator) -> Iterator[Timed]:
        rng = traffic.rng
        for minute, minute_ms in enumerate(range(start, end, MINUTE_MS)):
            yield minute_ms + rng.randint(0, 999), traffic.access(
                minute_ms + rng.randint(0, 999), principal, "query", "endpoint", "credit-api",
                count=per_minute, byte_count=per_minute * 900)
            for step in range(6):  # a sample of the sweep reaches the prediction log
                ts = minute_ms + step * 10_000 + rng.randint(0, 999)
                features = {"amount": round(10.0 + (minute * 6 + step) * 25.0, 2), "account_days": 1500.0,
                            "txn_last_24h": 10.0, "risk_index": 0.0, "session_len": 5.0}
                yield from traffic.prediction(_SPECS["credit"], ts, principal, features, logit=rng.gauss(0.0, 0.1))

    return Injection(attack, extra_records=records)


# --- theft -------------------------------------------------------------------------------

def download_burst(attack_id: str, principal: str, hours: float, downloads: int, minutes: float,
                   size: str = "large") -> Injection:
    start = _at(hours)
    end = start + int(minutes * MINUTE_MS)
    attack = Attack(attack_id, "download_burst", start, end, {"principal": principal}, "abrupt", size,
                    30 * MINUTE_MS, f"{principal} downloads {downloads} artifacts in {minutes} min")

    def records(traffic: TrafficGenerator) -> Iterator[Timed]:
        step = (end - start) // downloads
        for index in range(downloads):
            ts = start + index * step + traffic.rng.randint(0, step // 4)
            yield ts, traffic.access(ts, principal, "download", "model", ARTIFACTS[index % len(ARTIFACTS)],
                                     byte_count=traffic.rng.randint(40, 400) * 1_000_000, source_ip="203.0.113.77")

    return Injection(attack, extra_records=records)


def unusual_access(attack_id: str, principal: str, hours: float, denials: int) -> Injection:
    """A principal never seen before: ``denials`` denied pulls of a high-impact model, then success."""
    start = _at(hours)
    shape = "denied-then-success" if denials else "first-time principal, high-impact artifact"
    attack = Attack(attack_id, "unusual_access", start, start + denials * 20_000, {"principal": principal}, "abrupt",
                    "small", 30 * MINUTE_MS, f"{principal}: {shape} on credit:v7")

    def records(traffic: TrafficGenerator) -> Iterator[Timed]:
        for index in range(denials):
            ts = start + index * 20_000
            yield ts, traffic.access(ts, principal, "download", "model", "credit:v7", outcome="denied")
        ts = start + denials * 20_000
        yield ts, traffic.access(ts, principal, "download", "model", "credit:v7", byte_count=310_000_000)

    return Injection(attack, extra_records=records)


# --- poisoning ---------------------------------------------------------------------------

def poisoned_change(attack_id: str, kind: str, dataset: str, hours: float, description: str,
                    size: str = "large", **overrides: object) -> Injection:
    """One data change at ``hours`` with ``overrides`` (label share, rows, approval, hashes)."""
    start = _at(hours)
    attack = Attack(attack_id, kind, start, start, {"dataset": dataset}, "abrupt", size, 5 * MINUTE_MS, description)

    def records(traffic: TrafficGenerator) -> Iterator[Timed]:
        values = dict(overrides)
        if values.pop("reuse_hash", False):
            values["content_hash"] = values["expected_hash"] = traffic.hashes[dataset][len(traffic.hashes[dataset]) // 2]
        yield start, traffic.data_change(start, dataset, f"{attack_id}-v", **values)

    return Injection(attack, extra_records=records)


# --- the catalogue -----------------------------------------------------------------------

ScenarioSpec = tuple[str, str, TrafficConfig, Callable[[], list[Injection]]]


def _specs(scale: float) -> list[ScenarioSpec]:
    """All scenarios; ``scale`` < 1 shortens the clean stream (``--quick``)."""
    def hours(value: float) -> int:
        return int(value * 3600)

    return [
        ("prediction-drift", "score shifts: abrupt large and small, slow ramp", TrafficConfig(11, hours(8)), lambda: [
            score_drift("pd-abrupt-large", "credit", 2.5, 2.0),
            score_drift("pd-abrupt-small", "fraud", 3.5, 0.7, size="small"),
            score_drift("pd-gradual", "ranker", 4.5, 1.5, ramp_h=3.0),
        ]),
        ("feature-drift", "feature shifts that move scores and one that does not", TrafficConfig(12, hours(8)),
         lambda: [
             feature_drift("fd-abrupt-large", "credit", "session_len", 2.5, 3.0),
             feature_drift("fd-abrupt-small", "fraud", "amount", 3.5, 0.5, size="small"),
             feature_drift("fd-gradual", "ranker", "risk_index", 4.5, 2.0, ramp_h=3.0),
         ]),
        ("concept-segment", "labels change relation; one segment fails while overall looks stable",
         TrafficConfig(13, hours(9)), lambda: [
             concept_drift("cd-abrupt", "credit", 3.0, 1.0),
             concept_drift("cd-gradual", "ranker", 3.0, 1.0, ramp_h=3.0),
             segment_degradation("sd-region", "fraud", {"region": "APAC"}, 3.0),
         ]),
        ("canary-input", "a worse canary version; a principal sending odd inputs", TrafficConfig(14, hours(8)),
         lambda: [
             canary_regression("canary-v8", "credit", "v8", 3.0, 1.2),
             input_anomaly("odd-inputs", "partner-b", "credit", 5.0, 15),
         ]),
        ("theft-extraction", "download bursts, extraction, unusual access", TrafficConfig(15, hours(8)), lambda: [
            download_burst("dl-large", "contractor-17", 2.5, 120, 2),
            download_burst("dl-small", "eng-05", 3.5, 12, 5, size="small"),
            query_burst("qb-extraction", "partner-a", 4.5, 30, 300),
            unusual_access("ua-denied-then-success", "intern-3", 5.5, 3),
        ]),
        ("new-principal", "a principal never seen before pulls a high-impact model after a day of history",
         TrafficConfig(18, hours(28), predictions_per_s=0.1), lambda: [
             unusual_access("ua-first-time", "vendor-42", 26.0, 0),
         ]),
        ("poisoning", "poisoned appends: label shift, volume, approval, hashes",
         TrafficConfig(16, hours(24), predictions_per_s=0.2), lambda: [
             poisoned_change("ls-large", "label_shift", "fraud-train", 10.0, "fraud share 3% -> 40%", share=0.40),
             poisoned_change("ls-small", "label_shift", "credit-train", 11.0, "default share 12% -> 20%",
                             size="small", share=0.20),
             poisoned_change("vol-spike", "volume_spike", "ranker-clicks", 12.0, "60,000 rows (usual ~5,000)",
                             rows=60_000),
             poisoned_change("unapproved", "unapproved_change", "churn-train", 13.0,
                             "vendor-upload by mallory, nobody approved", size="small", source="vendor-upload",
                             actor="mallory", approved_by=None),
             poisoned_change("self-approved", "unapproved_change", "credit-train", 14.0,
                             "eng-07 approved their own change", size="small", actor="eng-07", approved_by="eng-07"),
             poisoned_change("hash-mismatch", "provenance_mismatch", "fraud-train", 15.0,
                             "content_hash differs from expected_hash", expected_hash="sha256:approved-bytes"),
             poisoned_change("hash-reuse", "provenance_mismatch", "ranker-clicks", 16.0,
                             "content hash of an earlier version reused for a new one", size="small", reuse_hash=True),
         ]),
        ("clean", "healthy traffic only: every incident is a false alarm",
         TrafficConfig(17, int(2 * DAY_MS / 1000 * scale)), lambda: []),
    ]


def build_scenario(name: str, description: str, config: TrafficConfig, injections: list[Injection]) -> Scenario:
    records = TrafficGenerator(config, injections).records()
    end_ms = config.start_ms + config.duration_s * 1000
    return Scenario(name, description, config.start_ms, end_ms, records, [i.attack for i in injections])


def synthetic_scenarios(quick: bool = False, only: set[str] | None = None) -> Iterator[Scenario]:
    """The synthetic scenarios, built one at a time (``quick``: clean stream of 6 hours, not 2 days)."""
    for name, description, config, injections in _specs(0.125 if quick else 1.0):
        if only is None or name in only:
            yield build_scenario(name, description, config, injections())
