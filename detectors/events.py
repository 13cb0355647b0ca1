"""Decoded input events: the three contracts publishers write (see ``schemas/*.avsc``).

These are plain, immutable value objects. Decoding bytes into them happens at the edge
(``streams.codec``); everything in ``detectors`` only ever sees these types. All
timestamps are event time in epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union

ACCESS_ACTIONS = ("download", "query", "upload", "deploy", "delete", "read", "write", "login", "other")
RESOURCE_TYPES = ("model", "dataset", "endpoint", "registry", "other")
ACCESS_OUTCOMES = ("success", "denied", "error")
CHANGE_KINDS = ("append", "update", "delete", "relabel", "schema", "other")


@dataclass(frozen=True, slots=True)
class PredictionEvent:
    """One model prediction, or (``features`` empty, ``label`` set) feedback for an earlier one."""

    event_id: str
    ts: int
    model_id: str
    model_version: str
    principal: str | None = None
    segment: Mapping[str, str] = field(default_factory=dict)
    features: Mapping[str, float] = field(default_factory=dict)
    prediction: str | None = None
    score: float | None = None
    label: str | None = None

    @property
    def is_feedback(self) -> bool:
        """Ground truth arriving for an earlier prediction with the same ``event_id``."""
        return self.label is not None and not self.features


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """Someone touched a model artifact, dataset or endpoint."""

    event_id: str
    ts: int
    principal: str
    action: str
    resource_type: str
    resource: str
    bytes: int = 0
    count: int = 1
    outcome: str = "success"
    source_ip: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataChangeEvent:
    """A change to a training dataset."""

    event_id: str
    ts: int
    dataset: str
    version: str
    source: str
    actor: str
    change: str
    rows: int
    label_counts: Mapping[str, int] = field(default_factory=dict)
    content_hash: str = ""
    expected_hash: str | None = None
    approved_by: str | None = None
    consumers: tuple[str, ...] = ()


Event = Union[PredictionEvent, AccessEvent, DataChangeEvent]

#: The ``type`` tag used by the replay file format for each event class.
EVENT_TYPES: Mapping[str, type] = {
    "prediction": PredictionEvent,
    "access": AccessEvent,
    "data_change": DataChangeEvent,
}


def event_type_name(event: Event) -> str:
    """The replay-format tag (``prediction``, ``access``, ``data_change``) of ``event``."""
    if isinstance(event, PredictionEvent):
        return "prediction"
    if isinstance(event, AccessEvent):
        return "access"
    return "data_change"
