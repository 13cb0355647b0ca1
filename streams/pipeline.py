"""One pipeline, two feeders: raw Kafka messages or replayed records in, outputs out.

``Pipeline.process_runs`` turns a batch of raw messages, given as runs of one partition's
records, into decoded events (or dead letters), applies the edge's input rules (event-time
bounds, per-key cap), runs the events through the pure detectors of their partition and the
shared incident book, and returns everything to deliver. The worker hands it what it fetched:
each partition's messages as a ``streams.fetched_run.FetchedRun`` (offsets and values) or as aiokafka's
record objects from ``getmany``; ``process_batch`` takes ``RawMessage`` tuples (tests, tools) and
groups them into runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from bisect import bisect_left
from operator import attrgetter
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Protocol, Sequence

from detectors.engine import DetectorSet, Engine, EngineOutput, feed_book
from detectors.events import EVENT_TYPES, Event, event_type_name
from detectors.findings import ContainmentCommand, Incident
from detectors.incidents import EvidenceRow
from streams.admission import FLOODABLE, EventTimeGuard, TopicPartitionKey, flood_key
from streams.codec import DeadLetter, EventDecoder, decoder_for, read_nothing
from streams.fetched_run import FetchedRun
from streams.settings import Settings


class RawMessage(NamedTuple):
    """One message as it came off a topic (a tuple: the worker makes one per record, so it must be cheap)."""

    topic: str
    partition: int
    offset: int
    value: bytes
    received_at: int


class Record(Protocol):
    """A message's place in its partition and its bytes: an aiokafka ``ConsumerRecord``, a ``RawMessage``,
    a ``streams.fetched_run.RawRecord``."""

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


#: One partition's consecutive records, offsets ascending: (topic, partition, received_at, records).
PartitionRun = tuple[str, int, int, Sequence[Record]]
_offset = attrgetter("offset")


def _runs_of(messages: Iterable[RawMessage]) -> Iterator[PartitionRun]:
    """Consecutive messages of one partition, received at the same time with offsets ascending, as runs."""
    run: list[RawMessage] = []
    for message in messages:
        if run:
            last = run[-1]
            if (message.partition != last.partition or message.topic != last.topic
                    or message.received_at != last.received_at or message.offset <= last.offset):
                yield last.topic, last.partition, last.received_at, run
                run = []
        run.append(message)
    if run:
        yield run[0].topic, run[0].partition, run[0].received_at, run


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
        """Everything a batch of messages causes; consecutive messages of a partition go as one run."""
        return self.process_runs(_runs_of(messages))

    def process_runs(self, runs: Iterable[PartitionRun]) -> BatchResult:
        """Everything a batch causes, given as runs of one partition's records (the worker's path).

        A run is ``(topic, partition, received_at, records)``, each record with ``offset`` and
        ``value`` (a ``FetchedRun``, aiokafka ``ConsumerRecord``s, ``RawMessage``s), offsets ascending. Records
        below the partition's replay mark rebuild state only.
        """
        result, output, replay_output = BatchResult(), EngineOutput(), EngineOutput()
        per_key: dict[tuple[TopicPartitionKey, str], list[RawMessage]] = {}
        for topic, number, received_at, records in runs:
            if not records:
                continue
            partition = (topic, number)
            live_from = bisect_left(records, self.replay_until.get(partition, -1), key=_offset)
            if live_from:
                self._run(partition, received_at, records[:live_from], True, result, replay_output, per_key)
            if live_from < len(records):
                self._run(partition, received_at, records[live_from:] if live_from else records, False, result,
                          output, per_key)
        result.dead_letters.extend(self._flood_dead_letters(per_key, result))
        result.incidents = output.incidents
        result.commands = output.commands
        result.evidence = output.evidence
        return result

    def _run(self, partition: TopicPartitionKey, received_at: int, records: Sequence[Record], replaying: bool,
             result: BatchResult, output: EngineOutput, per_key: dict) -> None:
        """Decode -> event-time rule -> per-key cap -> detect, for consecutive records of one partition."""
        events, sources, refused = self._decoded(partition, received_at, records)
        late = self.guard.screen(partition, [event.ts for event in events], received_at)
        if late:
            refused.extend(DeadLetter(partition[0], partition[1], sources[index].offset, received_at, reason,
                                      "validation", sources[index].value or b"", event_type_name(events[index]))
                           for index, reason in late)
            refused.sort(key=_offset)  # back into message order
            dropped = {index for index, _ in late}
            events = [event for index, event in enumerate(events) if index not in dropped]
            sources = [source for index, source in enumerate(sources) if index not in dropped]
        if self.max_events_per_key and self._may_flood(partition[0]):
            events = [event for event, source in zip(events, sources)
                      if not isinstance(event, FLOODABLE) or self._within_cap(
                          partition, event, RawMessage(partition[0], partition[1], source.offset,
                                                       source.value or b"", received_at), per_key)]
        if replaying:
            result.replayed += len(events)
        else:
            result.events += len(events)
            result.dead_letters.extend(refused)
        if events:
            feed_book(self.book, events, self.shard(partition).update_batch(events), output)

    def _may_flood(self, topic: str) -> bool:
        """Whether the topic's decoder makes events the per-key cap counts (a predictions topic never does)."""
        decoder = self.decoders.get(topic)
        return decoder is None or issubclass(EVENT_TYPES[decoder.event_type], FLOODABLE)

    def _decoded(self, partition: TopicPartitionKey, received_at: int,
                 records: Sequence[Record]) -> tuple[list[Event], Sequence[Record], list[DeadLetter]]:
        """The records' events with the record each came from, and a dead letter for each that has none.

        The compiled accept path first; whatever it declines takes the full decode, which words the error.
        """
        decoder = self.decoders.get(partition[0])
        read_run = decoder.run_reader if decoder is not None else None
        values: list[Any] | None = None  # what the compiled reader takes: records, or a fetched run's values
        if type(records) is FetchedRun:
            values = records.values
        elif type(records) is list:
            values = records
        if read_run is not None and values is not None:
            read_events, declined = read_run(values)
            if not declined:  # the common case: every record read by one compiled call
                return read_events, records, []
            accepted, declined_at = iter(read_events), set(declined)

            def decoded_at(index: int, record: Record) -> Event | None:
                return None if index in declined_at else next(accepted)
        else:
            read = decoder.plain_reader if decoder is not None else read_nothing  # then _decode words the error

            def decoded_at(index: int, record: Record) -> Event | None:
                return read(record.value or b"")
        events: list[Event] = []
        sources: list[Record] = []
        refused: list[DeadLetter] = []
        for index, record in enumerate(records):
            decoded = decoded_at(index, record)
            if decoded is None:
                decoded = self._decode(RawMessage(partition[0], partition[1], record.offset, record.value or b"",
                                                  received_at))
                if isinstance(decoded, DeadLetter):
                    refused.append(decoded)
                    continue
            events.append(decoded)
            sources.append(record)
        return events, sources, refused

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
