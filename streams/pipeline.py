"""One pipeline, two feeders: raw Kafka messages or replayed records in, outputs out.

``Pipeline.process_batch`` turns a batch of raw messages into decoded events (or
dead letters), applies the edge's input rules (event-time bounds, per-key cap), runs
the events through the pure detectors of their partition and the shared incident book,
and returns everything to deliver. The worker (Kafka) and ``run_events`` (tests, replay)
both use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple, Protocol

from detectors.engine import DetectorSet, Engine, EngineOutput, feed_book
from detectors.events import Event, event_type_name
from detectors.findings import ContainmentCommand, Incident
from detectors.incidents import EvidenceRow
from streams.admission import EventTimeGuard, TopicPartitionKey, flood_key
from streams.codec import DeadLetter, EventDecoder, decoder_for
from streams.settings import Settings


class RawMessage(NamedTuple):
    """One message as it came off a topic (a tuple: the worker makes one per record, so it must be cheap)."""

    topic: str
    partition: int
    offset: int
    value: bytes
    received_at: int


@dataclass
class BatchResult:
    """What one batch caused: to be written and published before its offsets are committed."""

    events: int = 0
    #: Events re-fed to detectors after a restore, whose outputs were already delivered.
    replayed: int = 0
    #: Events over their key's per-batch cap, not analysed (see ``Pipeline``).
    shed: int = 0
    incidents: list[Incident] = field(default_factory=list)
    commands: list[ContainmentCommand] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Raw events that touched open incidents, for the evidence archive.
    evidence: list[EvidenceRow] = field(default_factory=list)


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
    """The detection engine configured by ``settings`` (detectors by registered name).

    Impact tiers and the containment policy come from TOML files when settings name them
    (``assets_file``, ``policy_file``); the settings' containment fields fill what the
    policy file leaves out, and either kill switch stops all enforcement.
    """
    from detectors.base import build_detectors
    from streams.config_files import engine_from_files

    return engine_from_files(
        build_detectors(settings.detectors),
        assets_file=settings.assets_file or None,
        policy_file=settings.policy_file or None,
        database=settings.clickhouse_database,
        mode=settings.containment_mode,
        min_severity=settings.containment_min_severity,
        ttl_ms=settings.containment_ttl_s * 1000,
        kill_switch=settings.containment_kill_switch,
        cooldown_ms=settings.incident_cooldown_s * 1000,
    )


class Pipeline:
    """Decode -> event-time rule -> per-key cap -> detect, for batches of raw messages.

    Detector state is sharded by input partition: one ``DetectorSet`` per (topic,
    partition), created on first use as a fresh clone (or installed from a snapshot by
    the worker), feeding the one shared ``IncidentBook``. Messages below a partition's
    *replay mark* (set after a restore) are fed to the detectors and the book to rebuild
    their state, but what they cause is dropped: the run that first processed them had
    written and published it before it committed their offsets.
    """

    def __init__(self, engine: Engine, decoders: Mapping[str, EventDecoder], guard: EventTimeGuard | None = None,
                 max_events_per_key: int = 0) -> None:
        self.engine = engine
        self.book = engine.book
        self.decoders = dict(decoders)
        self.guard = guard or EventTimeGuard()
        self.max_events_per_key = max_events_per_key
        self.shards: dict[TopicPartitionKey, DetectorSet] = {}
        self.replay_until: dict[TopicPartitionKey, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> "Pipeline":
        limits = {"max_message_bytes": settings.max_message_bytes, "max_field_bytes": settings.max_field_bytes}
        decoders = {topic: decoder_for(kind, **limits) for topic, kind in settings.input_topics.items()}
        guard = EventTimeGuard(int(settings.max_event_future_s * 1000), int(settings.allowed_lateness_s * 1000))
        return cls(engine_from_settings(settings), decoders, guard, settings.max_events_per_key_per_batch)

    # ---- partition state (the worker calls these on assignment and revocation)
    def shard(self, partition: TopicPartitionKey) -> DetectorSet:
        shard = self.shards.get(partition)
        if shard is None:
            shard = self.shards[partition] = self.engine.detector_set.clone()
        return shard

    def install(self, partition: TopicPartitionKey, detector_set: DetectorSet, watermark: int | None,
                replay_until: int | None = None) -> None:
        self.shards[partition] = detector_set
        if watermark is not None:
            self.guard.watermarks[partition] = watermark
        if replay_until is not None:
            self.replay_until[partition] = replay_until

    def drop(self, partition: TopicPartitionKey) -> None:
        self.shards.pop(partition, None)
        self.guard.watermarks.pop(partition, None)
        self.replay_until.pop(partition, None)

    # ---- processing
    def process_batch(self, messages: Iterable[RawMessage]) -> BatchResult:
        result = BatchResult()
        output = EngineOutput()
        replay_output = EngineOutput()  # what replayed messages cause: already delivered once
        per_key: dict[tuple[TopicPartitionKey, str], list[RawMessage]] = {}
        run: list[Event] = []  # consecutive admitted events of one partition, replaying or not
        run_of: tuple[TopicPartitionKey, bool] | None = None
        partition: TopicPartitionKey | None = None
        replay_mark, decoder, check_time, capped = -1, None, self.guard.check, bool(self.max_events_per_key)
        for message in messages:
            topic, partition_number, offset, value, received_at = message
            if partition is None or partition_number != partition[1] or topic != partition[0]:
                partition = (topic, partition_number)
                replay_mark = self.replay_until.get(partition, -1)
                decoder = self.decoders.get(topic)
            replaying = offset < replay_mark
            # The compiled accept path first; whatever it declines takes the full decode, which words the error.
            decoded = decoder.read_plain(value) if decoder is not None else None
            if decoded is None:
                decoded = self._decode(message)
                if isinstance(decoded, DeadLetter):
                    if not replaying:
                        result.dead_letters.append(decoded)
                    continue
            late = check_time(partition, decoded.ts, received_at)
            if late is not None:
                if not replaying:
                    result.dead_letters.append(DeadLetter(topic, partition_number, offset, received_at, late,
                                                          "validation", value, event_type_name(decoded)))
                continue
            if capped and not self._within_cap(partition, decoded, message, per_key):
                continue
            if run_of is None or run_of[0] is not partition or run_of[1] is not replaying:
                self._detect(run_of, run, output, replay_output)
                run, run_of = [], (partition, replaying)
            run.append(decoded)
            if replaying:
                result.replayed += 1
            else:
                result.events += 1
        self._detect(run_of, run, output, replay_output)
        result.dead_letters.extend(self._flood_dead_letters(per_key, result))
        result.incidents = output.incidents
        result.commands = output.commands
        result.evidence = output.evidence
        return result

    def _detect(self, run_of: tuple[TopicPartitionKey, bool] | None, events: list[Event], output: EngineOutput,
                replay_output: EngineOutput) -> None:
        """One partition's consecutive events through its detectors (one micro-batch), then the book."""
        if run_of is None or not events:
            return
        partition, replaying = run_of
        findings = self.shard(partition).update_batch(events)
        feed_book(self.book, events, findings, replay_output if replaying else output)

    def _within_cap(self, partition: TopicPartitionKey, event: Event, message: RawMessage, per_key: dict) -> bool:
        """False when ``event`` is over its key's per-batch cap (it is then shed, not analysed)."""
        key = flood_key(event)
        if key is None:
            return True
        seen = per_key.setdefault((partition, key), [])
        seen.append(message)
        return len(seen) <= self.max_events_per_key

    def _flood_dead_letters(self, per_key: dict, result: BatchResult) -> list[DeadLetter]:
        """One dead letter per key that went over its cap in this batch, carrying the first shed message."""
        letters = []
        for (partition, key), seen in per_key.items():
            shed = seen[self.max_events_per_key:]
            if not shed:
                continue
            result.shed += len(shed)
            first = shed[0]
            if first.offset < self.replay_until.get(partition, -1):
                continue
            reason = (f"per-key cap: {key!r} sent {len(seen)} events in one batch, cap {self.max_events_per_key}; "
                      f"{len(shed)} were not analysed (offsets {first.offset}..{shed[-1].offset})")
            letters.append(DeadLetter(first.topic, first.partition, first.offset, first.received_at, reason[:300],
                                      "validation", first.value, "access"))
        return letters

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
    add_evidence = getattr(sink, "add_evidence", None)  # optional: sinks without an archive skip it
    if add_evidence is not None:
        for row in result.evidence:
            add_evidence(row)


def run_events(events: Iterable[Event], engine: Engine | None = None) -> EngineOutput:
    """Run already-decoded events through a (default) engine: the in-memory path for tests."""
    return (engine or Engine()).process_many(events)
