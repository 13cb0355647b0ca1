"""Unusual access: who touched what, in an order or for a first time that suggests misuse.

Two patterns on ``AccessEvent``:

* **denied then success** - at least ``denied_threshold`` denied attempts by one principal
  on one resource within ``window_ms``, then a success on it (guessed credentials, a
  permission changed under pressure, or a policy bypass);
* **first-time principal on a high-impact artifact** - a principal first seen less than
  ``new_principal_ms`` ago downloads or reads a high-impact resource it never accessed
  before. Principals seen during the detector's first ``warmup_ms`` of event time count
  as established (otherwise everybody would be new at start).
  High impact: listed in ``high_impact_resources``, starting with one of
  ``high_impact_prefixes``, or carrying the event attribute ``impact=high``.

Both are kind ``unusual_access``. A (principal, resource) pair gives one finding per
pattern occurrence. Per-principal state is a bounded LRU; each principal remembers at
most ``max_resources`` resources.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar

from detectors._lru import lru_get
from detectors.base import fresh_copy, register
from detectors.events import AccessEvent, Event
from detectors.findings import Finding

_READS = ("download", "read")


@dataclass(slots=True)
class _PrincipalState:
    """Kept small (a million principals): the resources accessed are one plain string until a
    second appears (a one-entry dict is 190 bytes), then a dict in access order (oldest first);
    denied attempts exist only for principals that were ever denied."""

    first_seen: int
    accessed: str | dict[str, None] | None = None
    denied: OrderedDict[str, deque[int]] | None = None

    def has_accessed(self, resource: str) -> bool:
        accessed = self.accessed
        return accessed == resource if isinstance(accessed, str) else accessed is not None and resource in accessed

    @property
    def n_accessed(self) -> int:
        accessed = self.accessed
        return 1 if isinstance(accessed, str) else len(accessed or ())


@register("unusual_access")
class UnusualAccessDetector:
    """Finds denied-then-success sequences and new principals pulling high-impact artifacts.

    Example: 20 engineers download models for an hour; at minute 30 ``intruder`` is denied
    ``model-7`` four times, then succeeds; at minute 50 the new ``visitor`` downloads the
    high-impact ``fraud:v3`` artifact.

    >>> from dataclasses import replace
    >>> from detectors._testing import MINUTE_MS, T0, download_stream
    >>> events = download_stream(seed=2, n_principals=20, minutes=60)
    >>> template = events[0]
    >>> attempts = [replace(template, event_id=f"x{i}", ts=T0 + 30 * MINUTE_MS + i * 1000, principal="intruder",
    ...                     resource="model-7", outcome="denied" if i < 4 else "success") for i in range(5)]
    >>> visit = replace(template, event_id="v", ts=T0 + 50 * MINUTE_MS, principal="visitor", resource="fraud:v3")
    >>> events = sorted(events + attempts + [visit], key=lambda e: e.ts)
    >>> detector = UnusualAccessDetector(high_impact_resources=frozenset({"fraud:v3"}), warmup_ms=20 * MINUTE_MS)
    >>> [(i, f.principal, f.resource, f.evidence["check"]) for i, e in enumerate(events) if (f := detector.update(e))]
    [(150, 'intruder', 'model-7', 'denied_then_success'), (254, 'visitor', 'fraud:v3', 'first_time_high_impact')]
    """

    name: ClassVar[str] = "unusual_access"
    event_types: ClassVar[tuple[type, ...]] = (AccessEvent,)
    kind: ClassVar[str] = "unusual_access"

    def __init__(
        self,
        denied_threshold: int = 3,
        window_ms: int = 15 * 60_000,
        high_impact_resources: frozenset[str] = frozenset(),
        high_impact_prefixes: tuple[str, ...] = (),
        warmup_ms: int = 24 * 3_600_000,
        new_principal_ms: int = 24 * 3_600_000,
        max_resources: int = 256,
        max_keys: int = 100_000,
    ) -> None:
        self.denied_threshold = denied_threshold
        self.window_ms = window_ms
        self.high_impact_resources = high_impact_resources
        self.high_impact_prefixes = high_impact_prefixes
        self.warmup_ms = warmup_ms
        self.new_principal_ms = new_principal_ms
        self.max_resources = max_resources
        self.max_keys = max_keys
        self._reset()

    def _reset(self) -> None:
        self._states: OrderedDict[str, _PrincipalState] = OrderedDict()
        self._first_ts: int | None = None

    @property
    def n_tracked_keys(self) -> int:
        """How many principals currently hold learned state (never above ``max_keys``)."""
        return len(self._states)

    def clone(self) -> "UnusualAccessDetector":
        return fresh_copy(self)

    def is_high_impact(self, event: AccessEvent) -> bool:
        """Whether ``event`` touches a resource configured or labelled (``impact=high``) as high impact."""
        return (
            event.resource in self.high_impact_resources
            or any(event.resource.startswith(prefix) for prefix in self.high_impact_prefixes)
            or event.attributes.get("impact", "").lower() == "high"
        )

    def update(self, event: Event) -> Finding | None:
        if not isinstance(event, AccessEvent):
            return None
        if self._first_ts is None:
            self._first_ts = event.ts
        state = self._state_for(event.principal, event.ts)
        if event.outcome == "denied":
            self._remember_denied(state, event)
            return None
        if event.outcome != "success":
            return None
        finding = self._denied_then_success(state, event) or self._first_time_high_impact(state, event)
        self._remember_access(state, event.resource)
        return finding

    def _state_for(self, principal: str, ts: int) -> _PrincipalState:
        return lru_get(self._states, principal, self.max_keys, lambda: _PrincipalState(ts))

    def _remember_denied(self, state: _PrincipalState, event: AccessEvent) -> None:
        if state.denied is None:
            state.denied = OrderedDict()
        attempts = state.denied.get(event.resource)
        if attempts is None:
            attempts = state.denied[event.resource] = deque(maxlen=max(self.denied_threshold, 1) * 4)
            while len(state.denied) > self.max_resources:
                state.denied.popitem(last=False)
        attempts.append(event.ts)

    def _remember_access(self, state: _PrincipalState, resource: str) -> None:
        accessed = state.accessed
        if self.max_resources < 1:
            return
        if accessed is None or accessed == resource:
            state.accessed = resource
            return
        if isinstance(accessed, str):
            accessed = state.accessed = {accessed: None}
        accessed.pop(resource, None)  # re-inserting moves it to the newest end
        accessed[resource] = None
        while len(accessed) > self.max_resources:
            del accessed[next(iter(accessed))]

    def _denied_then_success(self, state: _PrincipalState, event: AccessEvent) -> Finding | None:
        # a success closes the sequence either way
        attempts = state.denied.pop(event.resource, None) if state.denied else None
        if attempts is None:
            return None
        recent = [ts for ts in attempts if event.ts - self.window_ms <= ts <= event.ts]
        if len(recent) < self.denied_threshold:
            return None
        span_s = (event.ts - recent[0]) / 1000
        evidence = {
            "check": "denied_then_success",
            "denied_attempts": str(len(recent)),
            "denied_threshold": str(self.denied_threshold),
            "first_denied_at": _iso(recent[0]),
            "seconds_from_first_denial_to_success": f"{span_s:.0f}",
            "action": event.action,
            "source_ip": event.source_ip or "",
            "high_impact": str(self.is_high_impact(event)).lower(),
        }
        summary = (
            f"Principal {event.principal} was denied {event.action} of {event.resource} {len(recent)} times "
            f"from {_iso(recent[0])}, then succeeded at {_iso(event.ts)} ({span_s:.0f}s later"
            f"{', from ' + event.source_ip if event.source_ip else ''}). Credentials may have been guessed or a "
            f"permission changed to let it through. Confirm with the owner of {event.principal} and review "
            f"recent permission changes on {event.resource}."
        )
        bonus = 0.2 if self.is_high_impact(event) else 0.0
        strength = min(1.0, 0.6 + 0.05 * (len(recent) - self.denied_threshold) + bonus)
        return self._finding(event, recent[0], len(recent) / self.denied_threshold, strength, summary, evidence)

    def _first_time_high_impact(self, state: _PrincipalState, event: AccessEvent) -> Finding | None:
        assert self._first_ts is not None
        if (
            event.action not in _READS
            or state.first_seen - self._first_ts < self.warmup_ms  # present during warm-up: established
            or event.ts - state.first_seen >= self.new_principal_ms
            or state.has_accessed(event.resource)
            or not self.is_high_impact(event)
        ):
            return None
        age_min = (event.ts - state.first_seen) / 60_000
        evidence = {
            "check": "first_time_high_impact",
            "principal_first_seen": _iso(state.first_seen),
            "principal_age_minutes": f"{age_min:.0f}",
            "resources_accessed_before": str(state.n_accessed),
            "action": event.action,
            "bytes": str(event.bytes),
            "source_ip": event.source_ip or "",
        }
        summary = (
            f"Principal {event.principal}, first seen {_iso(state.first_seen)} ({age_min:.0f} minutes earlier, "
            f"{state.n_accessed} resources touched before), performed {event.action} of the high-impact "
            f"artifact {event.resource} ({event.bytes / 2**20:.0f} MiB) at {_iso(event.ts)}. A new identity pulling "
            f"a critical model is a common first step of theft. Confirm the principal's owner and purpose; "
            f"revoke its access if unknown."
        )
        return self._finding(event, event.ts, 1.0, 0.7, summary, evidence)

    def _finding(self, event: AccessEvent, start: int, score: float, strength: float, summary: str,
                  evidence: dict[str, str]) -> Finding:
        return Finding(
            kind=self.kind,
            detector=self.name,
            ts=event.ts,
            window_start=start,
            window_end=event.ts,
            score=score,
            threshold=1.0,
            strength=strength,
            summary=summary,
            principal=event.principal,
            resource=event.resource,
            evidence=evidence,
            recommended_actions=(
                f"Confirm the access to {event.resource} with the owner of {event.principal}",
                f"Force re-authentication of {event.principal}",
                f"Review recent permission changes on {event.resource} and where its bytes went",
            ),
        )


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
