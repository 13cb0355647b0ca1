"""The one protocol every detector follows, and the registry that finds them by name."""

from __future__ import annotations

import inspect
from typing import Callable, ClassVar, Protocol, Sequence, TypeVar, runtime_checkable

from detectors.events import Event
from detectors.findings import Finding


@runtime_checkable
class Detector(Protocol):
    """Learns from events of ``event_types`` and returns a ``Finding`` when something changed.

    Implementations are pure: no clocks, no I/O; event time arrives inside the event.
    They must be picklable (snapshots) and ``clone()``-able (independent copies).

    A detector that is cheaper per micro-batch (numpy over many events at once) may also
    define ``update_many(events) -> list[(position, Finding)]``; it must give exactly what
    ``update`` called on each event in order would. ``update_many`` below picks it up.
    """

    name: ClassVar[str]
    event_types: ClassVar[tuple[type, ...]]

    def update(self, event: Event) -> Finding | None: ...

    def clone(self) -> "Detector": ...


#: A finding and the position, in the batch given to ``update_many``, of the event that caused it.
Positioned = tuple[int, Finding]


def update_many(detector: Detector, events: Sequence[Event]) -> list[Positioned]:
    """``detector``'s findings over ``events`` in order, each with its event's position.

    Uses the detector's own ``update_many`` when it has one (a micro-batch implementation),
    else calls ``update`` per event; both give the same findings.

    >>> from detectors.score_drift import ScoreDriftDetector
    >>> update_many(ScoreDriftDetector(), [])
    []
    """
    batched = getattr(detector, "update_many", None)
    if batched is not None:
        return batched(events)  # type: ignore[no-any-return]
    update = detector.update
    return [(position, finding) for position, event in enumerate(events) if (finding := update(event)) is not None]


_Same = TypeVar("_Same")


def fresh_copy(detector: _Same) -> _Same:
    """A new, unlearned instance with ``detector``'s settings (River's ``clone``).

    Reads every ``__init__`` parameter back from the attribute of the same name, so a new
    setting needs no second edit in ``clone()``; detectors keep each setting under its name.

    >>> from detectors.query_burst import QueryBurstDetector
    >>> fresh_copy(QueryBurstDetector(peer_min_ratio=7.0)).peer_min_ratio
    7.0
    """
    parameters = inspect.signature(type(detector).__init__).parameters
    settings = {name: getattr(detector, name) for name in parameters if name != "self"}
    return type(detector)(**settings)


DetectorFactory = Callable[[], Detector]

#: name -> zero-argument factory; configuration picks detectors by these names.
DETECTORS: dict[str, DetectorFactory] = {}


def register(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Class decorator: make a detector available to configuration under ``name``."""

    def add(factory: DetectorFactory) -> DetectorFactory:
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} registered twice")
        DETECTORS[name] = factory
        return factory

    return add


def build_detectors(names: list[str] | tuple[str, ...]) -> list[Detector]:
    """Instantiate detectors by registered name; unknown names fail loudly with the choices."""
    import detectors.library  # noqa: F401  (registers the built-in detectors)

    unknown = [name for name in names if name not in DETECTORS]
    if unknown:
        raise KeyError(f"unknown detectors {unknown}; known: {sorted(DETECTORS)}")
    return [DETECTORS[name]() for name in names]
