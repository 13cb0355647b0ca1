"""The one protocol every detector follows, and the registry that finds them by name."""

from __future__ import annotations

from typing import Callable, ClassVar, Protocol, runtime_checkable

from detectors.events import Event
from detectors.findings import Finding


@runtime_checkable
class Detector(Protocol):
    """Learns from events of ``event_types`` and returns a ``Finding`` when something changed.

    Implementations are pure: no clocks, no I/O; event time arrives inside the event.
    They must be picklable (snapshots) and ``clone()``-able (independent copies).
    """

    name: ClassVar[str]
    event_types: ClassVar[tuple[type, ...]]

    def update(self, event: Event) -> Finding | None: ...

    def clone(self) -> "Detector": ...


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
