"""One pipeline, two feeders: raw Kafka messages or replayed records in, outputs out.

``Pipeline.process_batch`` turns a batch of raw messages into decoded events (or
dead letters), runs them through the pure engine and returns everything to deliver.
The worker (Kafka) and ``run_events`` (tests, replay) both use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol

from detectors.containment import ContainmentPolicy
from detectors.engine import Engine, EngineOutput
from detectors.events import Event
from detectors.findings import ContainmentCommand, Incident
from streams.codec import DeadLetter, EventDecoder, decoder_for
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message as it came off a topic."""

    topic: str
    partition: int
    offset: int
    value: bytes
    received_at: int


@dataclass
class BatchResult:
    """What one batch caused: to be written and published before its offsets are committed."""

    events: int = 0
    incidents: list[Incident] = field(default_factory=list)
    commands: list[ContainmentCommand] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class OutputSink(Protocol):
    """Where a batch's results go (ClickHouse store, Kafka publisher, a list in tests)."""

    def add_incident(self, incident: Incident) -> None: ...

    def add_command(self, command: ContainmentCommand) -> None: ...

    def add_dead_letter(self, record: dict) -> None: ...

    def flush(self) -> int: ...


class ListSink:
    """In-memory sink for tests and users' own tests."""

    def __init__(self) -> None:
        self.incidents: list[Incident] = []
        self.commands: list[ContainmentCommand] = []
        self.dead_letters: list[dict] = []
        self.flushes = 0

    def add_incident(self, incident: Incident) -> None:
        self.incidents.append(incident)

    def add_command(self, command: ContainmentCommand) -> None:
        self.commands.append(command)

    def add_dead_letter(self, record: dict) -> None:
        self.dead_letters.append(record)

    def flush(self) -> int:
        self.flushes += 1
        return 0


def engine_from_settings(settings: Settings) -> Engine:
    """The detection engine configured by ``settings`` (detectors by registered name)."""
    from detectors.base import build_detectors

    policy = ContainmentPolicy(
        mode=settings.containment_mode,
        min_severity=settings.containment_min_severity,
        ttl_ms=settings.containment_ttl_s * 1000,
        kill_switch=settings.containment_kill_switch,
    )
    return Engine(build_detectors(settings.detectors), policy, cooldown_ms=settings.incident_cooldown_s * 1000)


class Pipeline:
    """Decode -> detect for batches of raw messages from the input topics."""

    def __init__(self, engine: Engine, decoders: Mapping[str, EventDecoder]) -> None:
        self.engine = engine
        self.decoders = dict(decoders)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Pipeline":
        limits = {"max_message_bytes": settings.max_message_bytes, "max_field_bytes": settings.max_field_bytes}
        decoders = {topic: decoder_for(kind, **limits) for topic, kind in settings.input_topics.items()}
        return cls(engine_from_settings(settings), decoders)

    def process_batch(self, messages: Iterable[RawMessage]) -> BatchResult:
        result = BatchResult()
        output = EngineOutput()
        for message in messages:
            decoded = self._decode(message)
            if isinstance(decoded, DeadLetter):
                result.dead_letters.append(decoded)
                continue
            result.events += 1
            self.engine.process(decoded, output)
        result.incidents = output.incidents
        result.commands = output.commands
        return result

    def _decode(self, message: RawMessage) -> Event | DeadLetter:
        decoder = self.decoders.get(message.topic)
        if decoder is None:
            return DeadLetter(
                source_topic=message.topic, partition=message.partition, offset=message.offset,
                received_at=message.received_at, reason=f"no decoder for topic {message.topic!r}",
                error_kind="routing", raw=message.value, event_type=None,
            )
        return decoder.decode_or_dead_letter(
            message.value, source_topic=message.topic, partition=message.partition,
            offset=message.offset, received_at=message.received_at,
        )


def deliver(result: BatchResult, sink: OutputSink) -> None:
    """Hand every output of ``result`` to ``sink`` (the caller flushes)."""
    for incident in result.incidents:
        sink.add_incident(incident)
    for command in result.commands:
        sink.add_command(command)
    for dead_letter in result.dead_letters:
        sink.add_dead_letter(dead_letter.to_record())


def run_events(events: Iterable[Event], engine: Engine | None = None) -> EngineOutput:
    """Run already-decoded events through a (default) engine: the in-memory path for tests."""
    return (engine or Engine()).process_many(events)
