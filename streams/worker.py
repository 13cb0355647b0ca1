"""The Faust worker: feeds the pipeline from the three input topics.

One agent reads all three input topics in batches (``take_events``). For each batch it
decodes, detects, writes incidents/commands/dead letters to the store and flushes, then
publishes them to Kafka and waits for the acknowledgements. Only after that does the
agent ask for the next batch, which is when Faust acks the batch's events and may commit
their offsets: offsets are never committed ahead of the outputs they caused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import faust

from streams.pipeline import BatchResult, OutputSink, Pipeline, RawMessage, deliver
from streams.publisher import BatchPublisher, FaustProducer
from streams.settings import Settings

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
    started_at: float = field(default_factory=time.monotonic)

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.events += result.events
        self.incidents += len(result.incidents)
        self.commands += len(result.commands)
        self.dead_letters += len(result.dead_letters)


def faust_broker_url(bootstrap_servers: str) -> str:
    """``h1:9092,h2:9092`` -> ``kafka://h1:9092;kafka://h2:9092`` (Faust's form)."""
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip())


def build_app(settings: Settings, bootstrap_servers: str) -> faust.App:
    """A Faust app tuned for batch consumption (defaults join slowly and commit rarely)."""
    return faust.App(
        settings.group_id,
        broker=faust_broker_url(bootstrap_servers),
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        store="memory://",
        topic_allow_declare=False,
        topic_disable_leader=True,
        datadir=f"{settings.data_dir}/faust",
        consumer_auto_offset_reset="earliest",
        # tansu holds a JoinGroup for about half the session timeout: Faust's 60 s default
        # made every start wait 30 s. Real Kafka needs >= 6 s unless the broker allows less.
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 4),
        broker_commit_interval=0.5,
        broker_max_poll_records=max(settings.batch_size * 2, 1000),
        stream_buffer_maxsize=max(settings.batch_size * 4, 4096),
    )


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
        self.stats = WorkerStats()
        self.app = build_app(settings, self.bootstrap_servers)
        self.publisher = BatchPublisher(FaustProducer(self.app), settings)
        topics = self.app.topic(*settings.input_topics, value_type=bytes, internal=False)
        self.app.agent(topics, name="mlsentry-detect")(self._agent)

    async def _agent(self, stream: Any) -> None:
        async for events in stream.take_events(self.settings.batch_size, within=self.settings.batch_within_s):
            await self.handle(events)

    async def handle(self, events: list[Any]) -> BatchResult:
        received_at = int(time.time() * 1000)
        messages = [
            RawMessage(e.message.topic, e.message.partition, e.message.offset, e.value or b"", received_at)
            for e in events
        ]
        result = self.pipeline.process_batch(messages)
        deliver(result, self.sink)
        await self._flush_until_durable()
        await self.publisher.publish(result)
        self.stats.add(result)
        if self.observer is not None:
            self.observer(result)
        return result

    async def _flush_until_durable(self) -> None:
        """Flush the sink, retrying with capped backoff; never move on while it fails."""
        delay = 0.2
        while True:
            try:
                await asyncio.to_thread(self.sink.flush)
                return
            except Exception as exc:  # the store is down: keep the batch, do not ack it
                self.stats.sink_retries += 1
                log.warning("incident store flush failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def start(self) -> None:
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()


async def run_worker(settings: Settings, sink: OutputSink, bootstrap_servers: str | None = None,
                     stop_event: asyncio.Event | None = None, observer: BatchObserver | None = None) -> WorkerStats:
    """Start a worker and run until ``stop_event`` is set (or forever)."""
    worker = Worker(settings, sink, bootstrap_servers, observer)
    await worker.start()
    try:
        await (stop_event or asyncio.Event()).wait()
    finally:
        await worker.stop()
    return worker.stats
