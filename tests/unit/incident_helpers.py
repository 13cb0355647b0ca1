"""Small builders for incident-lifecycle tests: findings and events at chosen event times."""

from __future__ import annotations

from typing import Any

from detectors.events import AccessEvent, PredictionEvent
from detectors.findings import Finding

T0 = 1_800_000_000_000
MINUTE = 60_000


def finding(kind: str = "download_burst", ts: int = T0, strength: float = 0.6, **subject: Any) -> Finding:
    defaults: dict[str, Any] = {"principal": "mallory"} if kind in ("download_burst", "query_burst") else {}
    defaults.update(subject)
    evidence = defaults.pop("evidence", {})
    return Finding(kind=kind, detector=f"test_{kind}", ts=ts, window_start=defaults.pop("window_start", ts - MINUTE),
                   window_end=ts, score=strength * 10, threshold=5.0, strength=strength,
                   summary=f"{kind} at {ts}", evidence=evidence, **defaults)


def tick(ts: int, principal: str = "clock") -> AccessEvent:
    """An unrelated event that only moves event time on."""
    return AccessEvent(event_id=f"tick-{ts}", ts=ts, principal=principal, action="read", resource_type="other",
                       resource="x")


def prediction(ts: int, model_id: str = "fraud", version: str = "v3", index: int = 0) -> PredictionEvent:
    return PredictionEvent(event_id=f"p{index}-{ts}", ts=ts, model_id=model_id, model_version=version,
                           features={"x": 1.0}, score=0.5, prediction="negative")


def deploy(ts: int, model_id: str, version: str, artifact_hash: str = "", principal: str = "ci") -> AccessEvent:
    attributes = {"artifact_hash": artifact_hash} if artifact_hash else {}
    return AccessEvent(event_id=f"deploy-{model_id}-{version}", ts=ts, principal=principal, action="deploy",
                       resource_type="model", resource=f"{model_id}:{version}", attributes=attributes)
