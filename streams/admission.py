"""Input rules applied at the edge before an event reaches any detector.

* The event-time rule (:class:`EventTimeGuard`): forged timestamps cannot poison windows.
* The flooding rule (:func:`flood_key`): whose share of a batch an event counts against.

Both are enforced by ``streams.pipeline.Pipeline``; docs/guarantees.md states them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from detectors._compiled import SAFE_INT, int64_safe
from detectors.events import AccessEvent, Event

#: (topic, partition): the unit of ordering, ownership and detector state.
TopicPartitionKey = tuple[str, int]
OUT_OF_BOUNDS = "event time out of bounds"
#: Batches of at least this many times are screened with numpy first (``EventTimeGuard._all_accepted``).
_SCREEN_AT_ONCE = 64
#: Times, bounds and watermarks (ms) the numpy screen takes: within +-2**62, no sum of two overflows int64.
_SAFE = SAFE_INT


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
        refused = self.screen(partition, (ts,), received_at)
        return refused[0][1] if refused else None

    def screen(self, partition: TopicPartitionKey, stamps: Sequence[int], received_at: int) -> list[tuple[int, str]]:
        """``check`` on each of a partition's event times in turn (all received at ``received_at``).

        Returns the index and reason of each refused one; the watermark ends where the accepted
        ones left it. One loop with the watermark in a local: the pipeline's path per batch.
        """
        if len(stamps) >= _SCREEN_AT_ONCE and self._all_accepted(partition, stamps, received_at):
            return []
        refused: list[tuple[int, str]] = []
        watermark = self.watermarks.get(partition)
        latest, lateness = received_at + self.max_future_ms, self.allowed_lateness_ms
        for index, ts in enumerate(stamps):
            if ts > latest or watermark is not None and ts < watermark - lateness:
                refused.append((index, self._reason(ts, received_at, watermark)))
                continue
            candidate = ts if ts < received_at else received_at
            if watermark is None or candidate > watermark:
                watermark = candidate
        if watermark is not None:
            self.watermarks[partition] = watermark
        return refused

    def _all_accepted(self, partition: TopicPartitionKey, stamps: Sequence[int], received_at: int) -> bool:
        """Whether ``screen`` would accept every one of ``stamps`` (the watermark then moved as it would);
        False, with nothing changed, when one may be refused: ``screen`` then looks one by one.

        If all are accepted, the watermark before each is the running maximum of the accepted
        ``min(ts, received_at)`` before it, which numpy computes for the whole batch at once.
        """
        numbers = (received_at, self.max_future_ms, self.allowed_lateness_ms, self.watermarks.get(partition, 0))
        if not int64_safe(*numbers):
            return False
        if set(map(type, stamps)) != {int}:  # a float, None, a bool, a numpy int: compared as given, one by one
            return False
        times = np.array(stamps)
        if times.dtype != np.int64:  # an int beyond 64 bits: one by one
            return False
        if len(times) == 0 or times.min() <= -_SAFE or times.max() >= _SAFE:
            return False
        watermark = self.watermarks.get(partition)
        after = np.maximum.accumulate(np.minimum(times, received_at))  # the watermark after each, all accepted
        if watermark is not None:
            np.maximum(after, watermark, out=after)
        before = np.empty_like(after)
        before[1:] = after[:-1]
        before[0] = watermark if watermark is not None else times[0] + self.allowed_lateness_ms  # none: no bar
        if (times > received_at + self.max_future_ms).any() or (times < before - self.allowed_lateness_ms).any():
            return False
        self.watermarks[partition] = int(after[-1])
        return True

    def _reason(self, ts: int, received_at: int, watermark: int | None) -> str:
        if ts > received_at + self.max_future_ms:
            return (f"{OUT_OF_BOUNDS}: ts {ts} is {ts - received_at} ms ahead of receipt "
                    f"(limit {self.max_future_ms} ms)")
        assert watermark is not None
        return (f"{OUT_OF_BOUNDS}: ts {ts} is {watermark - ts} ms behind the partition watermark "
                f"(allowed lateness {self.allowed_lateness_ms} ms)")


#: Event types capped per key and batch (``flood_key`` names the key).
FLOODABLE = (AccessEvent,)


def flood_key(event: Event) -> str | None:
    """Whose per-batch share an event counts against: access events by principal; others are not capped.

    Predictions are keyed by model and a busy model legitimately sends thousands per batch,
    so capping them would blind drift detection; a principal has no such excuse.
    """
    if isinstance(event, FLOODABLE):
        return event.principal
    return None
