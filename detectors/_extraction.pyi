"""Types of the compiled extraction loop (detectors/_extraction.c)."""

from typing import Any

def learn_run(
    detector: object, model_key: tuple[str, str], positions: list[int], events: list[Any], start: int,
    population: Any, last: int, found: list[Any], last_touch: dict[Any, Any], prediction_type: type,
    settings: tuple[float, ...], /
) -> tuple[int, Any, int]: ...
