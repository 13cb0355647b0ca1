"""The Kafka worker: feeds the pipeline from the three input topics, at least once.

Why aiokafka and not a Faust agent: the guarantees below need exact control of *which*
offsets are committed *when*, a hook that runs before a partition is revoked (to save
its state) and one that can seek before its first record is processed (to restore it).
A Faust agent acks events and commits on its own timer, and its per-event path ran at
~16k msg/s here against ~350k for aiokafka's ``getmany``; so the worker is a plain
aiokafka batch loop (``enable_auto_commit=False``, ``getmany``, a
``ConsumerRebalanceListener``, explicit ``commit``). ``Worker``'s surface is unchanged.
Where aiokafka's fetcher is as ``streams.fetch`` reads it, the loop takes whole fetches as
offsets and values (``fetch_runs``) instead of ``getmany``'s record object per message.

One batch, in order (``_handle`` then ``_settle``):

1. decode and detect (``Pipeline.process_runs``; state per input partition);
2. hand the outputs to the :class:`~streams.spill.SpillingSink` in front of the store:
   written through, or spilled to disk while the store is down;
3. publish incidents, containment commands (HMAC-signed) and dead letters to Kafka and
   wait for every acknowledgement (retrying while the broker is away);
4. once everything up to this batch is in the store: write due snapshots, then commit
   the batch's offsets. Never commit ahead of step 2's durable write or step 3's acks.

Steps 2 and 3 of batch N run (a task, the store write in a thread) while step 1 detects
batch N+1: at most one batch in flight, awaited before the next one's outputs are handed
over, before a snapshot, on revocation and on stop.

Partition ownership (the rebalance listener, both under the batch lock so a batch in
flight finishes first): on revocation, settle, snapshot what is fully committed, drop
the partition's ``DetectorSet``; on assignment, restore each partition's snapshot (or
start fresh), seek to the snapshot's offset (or the partition's start) and mark the
committed offset as the replay mark: messages below it rebuild state without being
delivered again (see ``Pipeline`` and docs/guarantees.md). After each assignment the worker
records its group member id in its data directory; a run that starts after a crash first
ends that membership (``streams.membership``) instead of waiting out its session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streams.fetch import fetch_runs, reads_whole_fetches
from streams.kafka_security import client_kwargs
from streams.membership import (MemberRecord, clear_record, leave_for_previous_run, member_id_of, record_path,
                                write_record)
from streams.pipeline import BatchResult, OutputSink, PartitionRun, Pipeline, Record, deliver
from streams.publisher import AIOKafkaRecordProducer, BatchPublisher
from streams.runtime import tune_garbage_collector, tune_switch_interval
from streams.settings import Settings
from streams.snapshots import (KafkaSnapshotStore, SnapshotError, SnapshotHeader, decode_snapshot, encode_snapshot,
                               fingerprint, snapshot_key)
from streams.spill import SpillingSink

log = logging.getLogger("mlsentry.worker")

#: Called with every processed batch (the demo prints incidents from it; tests count).
BatchObserver = Callable[[BatchResult], None]


@dataclass
class WorkerStats:
    batches: int = 0
    events: int = 0
    incidents: int = 0
    commands: int = 0
    dead_letters: int = 0
    sink_retries: int = 0
    replayed: int = 0
    shed: int = 0
    commits: int = 0
    snapshots_written: int = 0
    snapshots_restored: int = 0
    snapshots_refused: int = 0
    publish_retries: int = 0
    assigned: list[tuple[str, int]] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    #: ``time.monotonic()`` when the last batch finished (``None`` before the first).
    last_batch_at: float | None = None

    def add(self, result: BatchResult) -> None:
        self.last_batch_at = time.monotonic()
        self.batches += 1
        self.events += result.events
        self.replayed += result.replayed
        self.shed += result.shed
        self.incidents += len(result.incidents)
        self.commands += len(result.commands)
        self.dead_letters += len(result.dead_letters)


@dataclass
class _PartitionProgress:
    """Where one owned partition stands: processed, committed, snapshotted."""

    next_offset: int
    committed: int
    snapshot_offset: int
    #: The offset the next record handed to the pipeline must have (the take-over's seek, then
    #: one past the last handled record).
    fetch_position: int = 0
    snapshot_at: float = field(default_factory=time.monotonic)
    #: Records below this offset were handed out by a fetch that crossed the take-over (``_continuing``
    #: kept them): should the consumer read them again, they are skipped. 0 (nothing) otherwise, so a log
    #: that restarts under an assigned partition (a recreated topic) is still read.
    handled_below: int = 0


def not_yet_handled(batch: Sequence[Record], handled_below: int) -> Sequence[Record]:
    """The records of one partition's fetched batch at or past ``handled_below``.

    A fetch that began while a take-over was under way can return a partition's first records
    before the take-over's seek puts the consumer back at them; they must not be handled twice.
    """
    if not batch or batch[0].offset >= handled_below:
        return batch
    return [record for record in batch if record.offset >= handled_below]


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.worker._on_assigned(list(assigned))


class Worker:
    """Runs the pipeline on Kafka until stopped."""

    def __init__(
        self,
        settings: Settings,
        sink: OutputSink,
        bootstrap_servers: str | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.bootstrap_servers = bootstrap_servers or settings.bootstrap_servers
        self.observer = observer
        self.pipeline = Pipeline.from_settings(settings)
        self.spill = SpillingSink(sink, settings.resolved_spill_dir, settings.spill_max_bytes, settings.sink_retry_max_s)
        self.stats = WorkerStats()
        self._kafka_kwargs = client_kwargs(settings)
        self._fingerprint = fingerprint(settings.detectors, self.pipeline.engine.detector_set)
        self._lock = asyncio.Lock()
        self._pending: deque[tuple[int, dict[TopicPartition, int]]] = deque()
        self._progress: dict[TopicPartition, _PartitionProgress] = {}
        self._to_commit: dict[TopicPartition, int] = {}
        self._generation = 0
        self._stopping = False
        self._consumer: AIOKafkaConsumer | None = None
        #: Whether ``_step`` reads through ``streams.fetch.fetch_runs`` (decided once the consumer has started).
        self._whole_fetches = False
        self._producer: AIOKafkaProducer | None = None
        self._publisher: BatchPublisher | None = None
        self._snapshots: KafkaSnapshotStore | None = None
        self._task: asyncio.Task[None] | None = None
        #: The previous batch's outputs on their way to the store and Kafka while the next batch is detected.
        self._outputs_in_flight: asyncio.Task[None] | None = None
        self._member_record = record_path(settings.data_dir)
        self._recorded_member_id: str | None = None

    # ---- lifecycle
    async def start(self) -> None:
        settings = self.settings
        tune_garbage_collector(settings.gc_young_threshold)
        tune_switch_interval(settings.gil_switch_interval_ms)
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, client_id="mlsentry-worker",
                                          acks="all", linger_ms=5, max_batch_size=256 * 1024, **self._kafka_kwargs)
        await self._producer.start()
        self._publisher = BatchPublisher(AIOKafkaRecordProducer(self._producer), settings)
        if settings.snapshot_key:
            self._snapshots = KafkaSnapshotStore(settings.topic_snapshots, self.bootstrap_servers, self._producer,
                                                 self._kafka_kwargs)
            await self._snapshots.ensure_topic()
        else:
            log.warning("no MLSENTRY_SNAPSHOT_KEY: snapshots off; a partition's state is rebuilt from its start")
        if not settings.group_instance_id:  # a crashed previous run may still hold its place in the group
            await leave_for_previous_run(self._member_record, settings.group_id, self.bootstrap_servers,
                                         self._kafka_kwargs)
        session_ms = int(settings.session_timeout_s * 1000)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=settings.group_id, client_id="mlsentry-worker",
            group_instance_id=settings.group_instance_id or None,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=settings.batch_size,
            # The broker may hold a fetch this long when it has nothing new; tansu does not answer early
            # when data arrives, so aiokafka's 500 ms default became every event's latency.
            fetch_max_wait_ms=max(int(settings.batch_within_s * 1000), 1),
            session_timeout_ms=session_ms, heartbeat_interval_ms=max(100, min(3000, session_ms // 4)),
            rebalance_timeout_ms=max(session_ms, 30_000), max_poll_interval_ms=600_000, **self._kafka_kwargs,
        )
        self._consumer.subscribe(list(settings.input_topics), listener=_Rebalance(self))
        await self._consumer.start()
        self._whole_fetches = settings.fetch_whole_batches and reads_whole_fetches(self._consumer)
        if settings.fetch_whole_batches and not self._whole_fetches:
            log.warning("aiokafka's fetcher is not as streams/fetch.py reads it (or isolation is read_committed): "
                        "consuming through getmany")
        self._task = asyncio.create_task(self._run(), name="mlsentry-worker")

    @property
    def reads_whole_fetches(self) -> bool:
        """Whether the worker reads through ``streams.fetch`` rather than ``getmany`` (known once started)."""
        return self._whole_fetches

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()`` while the consuming loop is alive."""
        return self._task is not None and not self._task.done() and not self._stopping

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await self._task
        try:
            if self._consumer is not None:
                try:
                    async with self._lock:
                        await self._outputs_delivered()
                        await self._settle(final=True)
                        await self._snapshot_owned(force=True)
                finally:
                    await self._consumer.stop()  # leave the group even when the last outputs failed
                    clear_record(self._member_record)  # left cleanly: nothing for the next run to end
        finally:
            if self._producer is not None:
                await self._producer.stop()

    # ---- the loop
    async def _run(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                await self._step()
                delay = 0.2
            except KafkaError as exc:  # broker away or rebalancing: keep state, try again
                log.warning("kafka error in the worker loop (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _step(self) -> None:
        assert self._consumer is not None
        self._apply_backpressure()
        generation = self._generation
        timeout_ms = max(int(self.settings.batch_within_s * 1000), 10)
        records: Mapping[TopicPartition, Sequence[Record]]
        if self._whole_fetches:
            records = await fetch_runs(self._consumer, timeout_ms, self.settings.batch_size)
        else:
            records = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self.settings.batch_size)
        async with self._lock:
            if records and generation != self._generation:
                records = self._continuing(records)
            if records:
                await self._handle(records)
            await self._settle()

    def _continuing(self, records: Mapping[TopicPartition, Sequence[Record]]) -> dict[TopicPartition, Sequence[Record]]:
        """After a rebalance during the fetch: keep the batches that start exactly where their partition's
        take-over positioned it; drop the rest (fetched from an older position) and put the consumer back
        at that position, since handing them out has moved it on. Dropping a batch that does continue
        would lose it for the same reason. A kept batch may have been handed out before the take-over's
        seek, which then put the consumer back at its start: move the consumer past it (and skip it,
        should a fetch already under way bring it again)."""
        assert self._consumer is not None
        kept = {}
        for tp, batch in records.items():
            progress = self._progress.get(tp)
            if progress is None or not batch:
                continue  # not ours any more: its new owner resumes from the last commit
            if batch[0].offset == progress.fetch_position:
                kept[tp] = batch
                progress.handled_below = batch[-1].offset + 1
                self._consumer.seek(tp, progress.handled_below)
            else:
                self._consumer.seek(tp, progress.fetch_position)
        return kept

    def _apply_backpressure(self) -> None:
        """Pause fetching while the spill is full (the consumer keeps polling, so it stays in the group)."""
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        if self.spill.full:
            consumer.pause(*assigned)
        elif consumer.paused():
            consumer.resume(*consumer.paused())

    async def _handle(self, records: Mapping[TopicPartition, Sequence[Record]]) -> None:
        """Detect on this batch while the previous batch's outputs are still being written (one in flight).

        Offsets move to ``_pending`` only once their batch's outputs are durable, so commits and
        snapshots never run ahead of the store.
        """
        received_at = int(time.time() * 1000)
        runs: list[PartitionRun] = []
        offsets = {}
        for tp, batch in records.items():
            progress = self._progress.get(tp)
            if progress is None or not batch:
                continue
            handled_below = min(progress.handled_below, progress.fetch_position)  # not the kept batch itself
            if batch[0].offset < handled_below:
                skipped = len(batch)
                batch = not_yet_handled(batch, handled_below)
                log.warning("%s-%d: %d records read again after a take-over; skipped", tp.topic, tp.partition,
                            skipped - len(batch))
                if not batch:
                    continue
            runs.append((tp.topic, tp.partition, received_at, batch))
            offsets[tp] = batch[-1].offset + 1
        result = self.pipeline.process_runs(runs)
        await self._outputs_delivered()  # the spill takes one batch at a time
        for tp, next_offset in offsets.items():
            self._progress[tp].next_offset = next_offset
            self._progress[tp].fetch_position = next_offset
        deliver(result, self.spill)
        self._outputs_in_flight = asyncio.create_task(self._deliver_outputs(result, offsets),
                                                      name="mlsentry-outputs")

    async def _deliver_outputs(self, result: BatchResult, offsets: dict[TopicPartition, int]) -> None:
        seq = await asyncio.to_thread(self.spill.write_batch)
        await self._publish_until_acked(result)
        self._pending.append((seq, offsets))
        self.stats.add(result)
        if self.observer is not None:
            self.observer(result)

    async def _outputs_delivered(self) -> None:
        """Wait for the batch in flight (its exceptions surface here, in the loop)."""
        in_flight, self._outputs_in_flight = self._outputs_in_flight, None
        if in_flight is not None:
            await in_flight

    async def _publish_until_acked(self, result: BatchResult) -> None:
        """Publish the batch's outputs; while the broker is away, retry (the batch is never dropped)."""
        assert self._publisher is not None
        delay = 0.2
        while True:
            try:
                await self._publisher.publish(result)
                return
            except KafkaError as exc:
                self.stats.publish_retries += 1
                log.warning("publishing outputs failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _settle(self, final: bool = False) -> None:
        """Retry spilled outputs; snapshot what is due; commit offsets whose outputs are all in the store."""
        if self._pending and self.spill.durable_seq < self._pending[-1][0]:
            await self._outputs_delivered()  # the spill is not shared with a write in flight
            await asyncio.to_thread(self.spill.drain, final)
        elif self._snapshots is not None and self._snapshot_due(time.monotonic()):
            await self._outputs_delivered()  # under steady load there is always a batch in flight
        self.stats.sink_retries = self.spill.failures
        durable = self._to_commit
        while self._pending and self._pending[0][0] <= self.spill.durable_seq:
            for tp, offset in self._pending.popleft()[1].items():
                durable[tp] = max(offset, durable.get(tp, 0))
        for tp in [tp for tp in durable if tp not in self._progress]:
            del durable[tp]  # revoked: its new owner resumes from the last commit
        if not durable:
            return
        if not self._pending:
            await self._snapshot_owned(force=False)
        await self._commit()

    async def _commit(self) -> None:
        """Commit ``_to_commit``; on failure it stays there and is retried with the next settle."""
        assert self._consumer is not None
        await self._consumer.commit(dict(self._to_commit))
        self.stats.commits += 1
        for tp, offset in self._to_commit.items():
            self._progress[tp].committed = offset
        self._to_commit.clear()

    # ---- snapshots
    async def _snapshot_owned(self, force: bool) -> None:
        """Snapshot partitions whose every processed event is in the store, when due (or ``force``)."""
        in_flight = self._outputs_in_flight is not None and not self._outputs_in_flight.done()
        if self._snapshots is None or self._pending or in_flight:
            return  # a snapshot must not hold state whose outputs are not durable yet
        now = time.monotonic()
        for tp, progress in list(self._progress.items()):
            if self._due(progress, now) or (force and progress.next_offset > progress.snapshot_offset):
                await self._write_snapshot(tp, progress)

    def _snapshot_due(self, now: float) -> bool:
        return any(self._due(progress, now) for progress in self._progress.values())

    def _due(self, progress: _PartitionProgress, now: float) -> bool:
        new_events = progress.next_offset - progress.snapshot_offset
        return new_events >= self.settings.snapshot_every_events or (
            new_events > 0 and now - progress.snapshot_at >= self.settings.snapshot_every_s)

    async def _write_snapshot(self, tp: TopicPartition, progress: _PartitionProgress) -> None:
        assert self._snapshots is not None
        key = (tp.topic, tp.partition)
        header = SnapshotHeader(
            group=self.settings.group_id, topic=tp.topic, partition=tp.partition, offset=progress.next_offset,
            watermark=self.pipeline.guard.watermarks.get(key, -1), fingerprint=self._fingerprint,
            events=progress.next_offset, created_at_ms=int(time.time() * 1000),
        )
        envelope = encode_snapshot(header, self.pipeline.shard(key), self.settings.snapshot_key)
        await self._snapshots.save(snapshot_key(self.settings.group_id, tp.topic, tp.partition), envelope)
        progress.snapshot_offset, progress.snapshot_at = progress.next_offset, time.monotonic()
        self.stats.snapshots_written += 1

    # ---- partition ownership
    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            self._generation += 1
            self._to_commit.clear()  # only commits made in this generation: a stale one could skip events
            try:
                await self._outputs_delivered()
                await self._settle()
                await self._snapshot_owned(force=True)
            except Exception as exc:  # the new owner restores an older snapshot and replays: still correct
                log.warning("could not settle before revocation (%s)", exc)
            for tp in revoked:
                self._progress.pop(tp, None)
                self.pipeline.drop((tp.topic, tp.partition))

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        assert self._consumer is not None
        async with self._lock:
            self._generation += 1
            self.stats.assigned = sorted((tp.topic, tp.partition) for tp in assigned)
            log.info("assignment: %s", " ".join(f"{topic}-{partition}" for topic, partition in self.stats.assigned))
            envelopes = await self._load_snapshots(assigned)
            for tp in assigned:
                await self._take_over(tp, envelopes.get(snapshot_key(self.settings.group_id, tp.topic, tp.partition)))
            # Again at the end: a fetch that began while the take-overs were under way (it saw the first
            # bump) may hold records from before a seek, and must go through ``_continuing`` too.
            self._generation += 1
            self._record_member()

    def _record_member(self) -> None:
        """Note this run's member id, which a restart after a crash ends first (``streams.membership``)."""
        member_id = member_id_of(self._consumer) if not self.settings.group_instance_id else None  # type: ignore[arg-type]
        if member_id is None or member_id == self._recorded_member_id:
            return
        try:
            write_record(self._member_record, MemberRecord(self.settings.group_id, member_id))
            self._recorded_member_id = member_id
        except OSError as exc:
            log.warning("could not record the group member id (%s); a restart after a crash will join slower", exc)

    async def _load_snapshots(self, assigned: list[TopicPartition]) -> dict[str, bytes]:
        if self._snapshots is None or not assigned:
            return {}
        bases = [snapshot_key(self.settings.group_id, tp.topic, tp.partition) for tp in assigned]
        try:
            return await self._snapshots.load(bases)
        except (KafkaError, SnapshotError) as exc:
            log.warning("could not read snapshots (%s); rebuilding state from the partitions' start", exc)
            return {}

    async def _take_over(self, tp: TopicPartition, envelope: bytes | None) -> None:
        """Restore (or start) one partition's state and position its consumer."""
        assert self._consumer is not None
        committed = await self._consumer.committed(tp)
        if committed and not await self._log_reaches(tp, committed):  # the broker lost the log (or it was recreated)
            log.warning("%s-%d: committed offset %d is beyond the log end; ignoring it", tp.topic, tp.partition,
                        committed)
            committed = None
        header = self._restore(tp, envelope, committed) if envelope is not None else None
        if header is not None:
            start = header.offset
            self._consumer.seek(tp, start)
        else:
            self.pipeline.drop((tp.topic, tp.partition))
            if committed:
                self.pipeline.replay_until[(tp.topic, tp.partition)] = committed
            # A plain seek, not seek_to_beginning: that resets asynchronously, and a reset landing after
            # the first batch was handed out made the partition's start be read twice. On a log whose
            # start was deleted, offset 0 is out of range and auto_offset_reset ("earliest") applies.
            self._consumer.seek(tp, 0)
            start = 0
        done = committed if committed is not None else start
        self._progress[tp] = _PartitionProgress(next_offset=max(start, done), committed=done, snapshot_offset=start,
                                                fetch_position=start)
        log.info("partition %s-%d: %s, resuming at offset %d (committed %s)", tp.topic, tp.partition,
                 "restored from snapshot" if header else "fresh state", start, committed)

    async def _log_reaches(self, tp: TopicPartition, committed: int) -> bool:
        """Whether the log still holds offset ``committed - 1`` (so ``committed`` is a real position).

        The reported end offset alone is not enough: the embedded broker (tansu 0.6) reports the base
        offset of the last record batch as the end, so a committed offset inside that batch looks
        "beyond the end". When the report says so, a short fetch of the record itself decides.
        """
        end = (await self._consumer.end_offsets([tp]))[tp]  # type: ignore[union-attr]
        if committed <= end:
            return True
        probe = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                 client_id="mlsentry-worker-probe", **self._kafka_kwargs)
        await probe.start()
        try:
            probe.assign([tp])
            probe.seek(tp, committed - 1)
            records = await probe.getmany(tp, timeout_ms=2000, max_records=1)
            return any(message.offset == committed - 1 for message in records.get(tp, []))
        finally:
            await probe.stop()

    def _restore(self, tp: TopicPartition, envelope: bytes, committed: int | None) -> SnapshotHeader | None:
        try:
            header, detector_set = decode_snapshot(
                envelope, self.settings.snapshot_key, group=self.settings.group_id, topic=tp.topic,
                partition=tp.partition, expected_fingerprint=self._fingerprint)
        except SnapshotError as exc:
            self.stats.snapshots_refused += 1
            log.error("refusing snapshot of %s-%d: %s; starting it fresh", tp.topic, tp.partition, exc)
            return None
        replay_until = committed if committed is not None and committed > header.offset else None
        self.pipeline.drop((tp.topic, tp.partition))
        self.pipeline.install((tp.topic, tp.partition), detector_set,
                              header.watermark if header.watermark >= 0 else None, replay_until)
        self.stats.snapshots_restored += 1
        return header
