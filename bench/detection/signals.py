"""Per-key univariate signals for the peers, cut from the same scenario records.

Peers (raw River, Frouros, Menelaus) watch one number stream per key, so the harness
derives the streams a user would wire them to: scores and each feature per model version,
the 0/1 error stream per model version (feedback joined to its prediction by
``event_id``) and per segment attribute, per-principal per-minute download and query
counts, and per-dataset label share and row counts. Each point keeps the event time and
stream position at which it became known, so peer alarms are scored like our incidents.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

MINUTE_MS = 60_000
MAX_PENDING_PREDICTIONS = 500_000


@dataclass
class Signal:
    key: str
    kind: str  # the incident kind an alarm on this signal stands for
    subject: Mapping[str, Any]
    binary: bool = False
    values: list[float] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)

    def add(self, value: float, ts: int, position: int) -> None:
        self.values.append(value)
        self.ts.append(ts)
        self.positions.append(position)


class _Signals:
    def __init__(self) -> None:
        self.by_key: dict[str, Signal] = {}

    def add(self, key: str, kind: str, subject: Mapping[str, Any], value: float, ts: int, position: int,
            binary: bool = False) -> None:
        signal = self.by_key.get(key)
        if signal is None:
            signal = self.by_key[key] = Signal(key, kind, subject, binary)
        signal.add(value, ts, position)


def extract_signals(records: Sequence[Mapping[str, Any]], end_ms: int) -> list[Signal]:
    """All peer signals of one scenario (records in event-time order)."""
    signals = _Signals()
    pending: OrderedDict[str, tuple[str, Mapping[str, str]]] = OrderedDict()
    minutes: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for position, record in enumerate(records):
        event = record["event"]
        if record["type"] == "prediction":
            _prediction(signals, pending, event, position)
        elif record["type"] == "access":
            _access(minutes, event)
        else:
            _data_change(signals, event, position)
    timestamps = [record["event"]["ts"] for record in records]
    _minute_counts(signals, minutes, timestamps, end_ms)
    return list(signals.by_key.values())


def _prediction(signals: _Signals, pending: "OrderedDict[str, tuple[str, Mapping[str, str]]]",
                event: Mapping[str, Any], position: int) -> None:
    model = {"model_id": event["model_id"], "model_version": event["model_version"]}
    name = f"{event['model_id']}:{event['model_version']}"
    ts = event["ts"]
    if event.get("features"):
        if event.get("score") is not None:
            signals.add(f"score/{name}", "prediction_drift", model, float(event["score"]), ts, position)
        for feature, value in sorted(event["features"].items()):
            signals.add(f"feature/{name}/{feature}", "feature_drift", model, float(value), ts, position)
        if event.get("prediction") is not None:
            pending[event["event_id"]] = (event["prediction"], event.get("segment") or {})
            while len(pending) > MAX_PENDING_PREDICTIONS:
                pending.popitem(last=False)
        return
    joined = pending.pop(event["event_id"], None) if event.get("label") is not None else None
    if joined is None:
        return
    prediction, segment = joined
    error = 0.0 if prediction == event["label"] else 1.0
    signals.add(f"error/{name}", "concept_drift", model, error, ts, position, binary=True)
    for attribute, value in sorted(segment.items()):
        signals.add(f"segment_error/{name}/{attribute}={value}", "segment_degradation",
                    {**model, "segment": {attribute: value}}, error, ts, position, binary=True)


def _access(minutes: dict[tuple[str, str], dict[int, float]], event: Mapping[str, Any]) -> None:
    if event.get("outcome", "success") != "success":
        return
    minute = event["ts"] // MINUTE_MS
    if event["action"] == "download":
        bucket = minutes[("download_burst", event["principal"])]
        bucket[minute] = bucket.get(minute, 0.0) + 1.0
    elif event["action"] == "query":
        bucket = minutes[("query_burst", event["principal"])]
        bucket[minute] = bucket.get(minute, 0.0) + float(event.get("count", 1))


def _minute_counts(signals: _Signals, minutes: Mapping[tuple[str, str], Mapping[int, float]],
                   timestamps: Sequence[int], end_ms: int) -> None:
    """Per-minute totals from each principal's first active minute on, zeros included,
    each known when its minute closes."""
    for (kind, principal), counts in sorted(minutes.items()):
        for minute in range(min(counts), end_ms // MINUTE_MS):
            closes_at = (minute + 1) * MINUTE_MS
            position = max(0, bisect_left(timestamps, closes_at) - 1)
            signals.add(f"{kind}/{principal}", kind, {"principal": principal}, counts.get(minute, 0.0), closes_at,
                        position)


def _data_change(signals: _Signals, event: Mapping[str, Any], position: int) -> None:
    subject = {"dataset": event["dataset"]}
    rows = float(event["rows"])
    labels = event.get("label_counts") or {}
    if labels and rows > 0:
        first = sorted(labels)[0]
        signals.add(f"label_share/{event['dataset']}", "label_shift", subject, labels[first] / rows, event["ts"],
                    position)
    signals.add(f"rows/{event['dataset']}", "volume_spike", subject, rows, event["ts"], position)


def signal_families(signals: Iterable[Signal]) -> dict[str, int]:
    """How many signals of each kind (for the report)."""
    counts: dict[str, int] = defaultdict(int)
    for signal in signals:
        counts[signal.kind] += 1
    return dict(counts)
