"""Types of the compiled feedback join (detectors/_join.c)."""

from typing import AbstractSet, Any, Sequence

def feed(
    join: object, events: Sequence[object], start: int, matches: list[Any], prediction_type: type,
    matched_type: type, positive_labels: AbstractSet[str], /
) -> int: ...
