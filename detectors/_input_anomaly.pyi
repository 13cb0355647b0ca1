"""Types of the compiled input-anomaly loops (detectors/_input_anomaly.c)."""

from typing import Any, Callable

def judge(
    scores: list[float], positions: list[int], events: list[Any], row: int, seen: int, flagged: int, learned: int,
    calibration: int, calibrated_from: int, learn_every: int, room: int, threshold_now: Callable[[], float | None],
    learn_score: Callable[[float], None], verdicts: list[Any], to_learn: list[int], /
) -> tuple[int, int, int, int]: ...
def aggregate(
    detector: object, verdicts: list[Any], start: int, prediction_type: type, window_minutes: int, minute_ms: int,
    min_anomalies: int, new_principal: Callable[[Any], Any], /
) -> tuple[int, list[Any], int, int]: ...
