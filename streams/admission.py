"""Input rules applied at the edge before an event reaches any detector.

* The event-time rule (:class:`EventTimeGuard`): forged timestamps cannot poison windows.
* The flooding rule (:func:`flood_key`): whose share of a batch an event counts against.

Both are enforced by ``streams.pipeline.Pipeline``; docs/guarantees.md states them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.events import AccessEvent, Event

#: (topic, partition): the unit of ordering, ownership and detector state.
TopicPartitionKey = tuple[str, int]
OUT_OF_BOUNDS = "event time out of bounds"


@dataclass
class EventTimeGuard:
    """The event-time rule, applied per partition before an event reaches the detectors.

    An event is dead-lettered (reason starting ``event time out of bounds``) when

    * its ``ts`` is more than ``max_future_ms`` ahead of the wall clock when we received
      it (``received_at``): publishers' clocks can be off, not by days; or
    * its ``ts`` is more than ``allowed_lateness_ms`` behind the partition's watermark.

    The watermark is the largest ``min(ts, received_at)`` of the accepted events, so no
    accepted event can drag it ahead of real time: one forged far-future event can
    neither enter a detector window nor make later honest events look late.

    >>> guard = EventTimeGuard(max_future_ms=1_000, allowed_lateness_ms=5_000)
    >>> guard.check(("t", 0), 99_000, received_at=100_000) is None
    True
    >>> guard.check(("t", 0), 200_000, received_at=100_000)
    'event time out of bounds: ts 200000 is 100000 ms ahead of receipt (limit 1000 ms)'
    >>> guard.check(("t", 0), 50_000, received_at=100_000)
    'event time out of bounds: ts 50000 is 49000 ms behind the partition watermark (allowed lateness 5000 ms)'
    """

    max_future_ms: int = 86_400_000
    allowed_lateness_ms: int = 7 * 86_400_000
    watermarks: dict[TopicPartitionKey, int] = field(default_factory=dict)

    def check(self, partition: TopicPartitionKey, ts: int, received_at: int) -> str | None:
        """``None`` (and the watermark advances) if the event is accepted, else the dead-letter reason."""
        if ts > received_at + self.max_future_ms:
            return (f"{OUT_OF_BOUNDS}: ts {ts} is {ts - received_at} ms ahead of receipt "
                    f"(limit {self.max_future_ms} ms)")
        watermark = self.watermarks.get(partition)
        if watermark is not None and ts < watermark - self.allowed_lateness_ms:
            return (f"{OUT_OF_BOUNDS}: ts {ts} is {watermark - ts} ms behind the partition watermark "
                    f"(allowed lateness {self.allowed_lateness_ms} ms)")
        candidate = min(ts, received_at)
        self.watermarks[partition] = candidate if watermark is None else max(watermark, candidate)
        return None


def flood_key(event: Event) -> str | None:
    """Whose per-batch share an event counts against: access events by principal; others are not capped.

    Predictions are keyed by model and a busy model legitimately sends thousands per batch,
    so capping them would blind drift detection; a principal has no such excuse.
    """
    if isinstance(event, AccessEvent):
        return event.principal
    return None
