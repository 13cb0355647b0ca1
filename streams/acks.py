"""Responders' acknowledgements of containment commands, tracked by the worker's host.

A command nobody acknowledged is an alert that reached no one. Responders publish one
JSON ack per command (see ``examples/responder.py``) to ``topic_containment_acks``; the
host's Faust agent feeds them here and ``GET /stats`` reports counts by outcome, the
latest acks and how many acks were unreadable.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from typing import Any

REQUIRED_FIELDS = ("command_id", "outcome")


class AckTracker:
    """Counts acknowledgements by outcome and keeps the most recent ``keep`` of them."""

    def __init__(self, keep: int = 100) -> None:
        self.by_outcome: Counter[str] = Counter()
        self.acknowledged: set[str] = set()
        self.malformed = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._max_ids = 100_000

    def record(self, raw: bytes | None) -> dict[str, Any] | None:
        """Take one ack message; ``None`` (and a malformed count) when it is unreadable."""
        try:
            ack = json.loads(raw or b"")
        except (ValueError, RecursionError):
            ack = None
        if not isinstance(ack, dict) or any(not isinstance(ack.get(name), str) for name in REQUIRED_FIELDS):
            self.malformed += 1
            return None
        self.by_outcome[ack["outcome"]] += 1
        if len(self.acknowledged) < self._max_ids:
            self.acknowledged.add(ack["command_id"])
        self.recent.append(ack)
        return ack

    def summary(self) -> dict[str, Any]:
        return {"total": sum(self.by_outcome.values()), "by_outcome": dict(self.by_outcome),
                "malformed": self.malformed, "recent": list(self.recent)[-10:]}
