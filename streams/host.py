"""The Faust app that hosts a running worker: lifecycle, acks agent, HTTP health/metrics.

`mlsentry worker` runs inside a ``faust.App``:

* the app stops the detection worker as one of its services (and starts it, unless the
  caller did first: ``mlsentry worker`` does, so that detection does not wait for the
  app's own consumer group, which after a crash waits out the dead member);
* a Faust agent consumes responders' acknowledgements (``topic_containment_acks``) so
  the worker knows which containment commands reached someone (:mod:`streams.acks`);
* its web server answers ``GET /health`` (200 while the worker consumes and its last
  batch is recent, 503 otherwise: a liveness/readiness probe) and ``GET /stats`` (the
  worker's counters and the acknowledgements as JSON).
 The hot path itself is the
aiokafka batch loop in :mod:`streams.worker` (why: see its docstring and README,
"Why the hot path is not a Faust agent").
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import faust
from mode import Service

from streams.acks import AckTracker
from streams.kafka_security import faust_credentials
from streams.settings import Settings
from streams.worker import Worker

#: /health turns 503 when the worker has been assigned partitions but no batch finished for this long.
STALL_AFTER_S = 120.0


def faust_broker_url(bootstrap_servers: str) -> str:
    """``h1:9092,h2:9092`` -> ``kafka://h1:9092;kafka://h2:9092`` (Faust's form)."""
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip())


def health_of(worker: Worker, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for ``/health``: alive, consuming, not stalled."""
    now = time.monotonic() if now is None else now
    last = worker.stats.last_batch_at
    stalled = bool(worker.stats.assigned) and last is not None and now - last > STALL_AFTER_S
    healthy = worker.running and not stalled
    body = {"status": "ok" if healthy else "unhealthy", "running": worker.running, "stalled": stalled,
            "assigned_partitions": len(worker.stats.assigned),
            "seconds_since_last_batch": None if last is None else round(now - last, 3)}
    return (200 if healthy else 503), body


def stats_of(worker: Worker, acks: AckTracker | None = None) -> dict[str, Any]:
    stats = dataclasses.asdict(worker.stats)
    stats["assigned"] = [f"{topic}/{partition}" for topic, partition in worker.stats.assigned]
    stats["uptime_s"] = round(time.monotonic() - worker.stats.started_at, 3)
    if acks is not None:
        stats["containment_acks"] = acks.summary()
    return stats


def build_host(settings: Settings, worker: Worker, acks: AckTracker | None = None) -> faust.App:
    """A Faust app running ``worker`` and the acks agent, with ``/health`` and ``/stats`` pages."""
    acks = acks if acks is not None else AckTracker()
    session_s = settings.session_timeout_s
    app = faust.App(
        f"{settings.group_id}-host",
        broker=faust_broker_url(worker.bootstrap_servers),
        broker_credentials=faust_credentials(settings),
        web_enabled=settings.web_port > 0,
        web_host=settings.web_host,
        web_port=settings.web_port or 6066,
        store="memory://",
        topic_disable_leader=True,
        autodiscover=False,
        topic_allow_declare=False,
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        datadir=f"{settings.data_dir}/faust",
        # tansu holds a JoinGroup for about half the session timeout: Faust's 60 s default
        # made every start wait 30 s.
        broker_session_timeout=session_s,
        broker_rebalance_timeout=session_s,
        broker_heartbeat_interval=min(3.0, session_s / 4),
    )
    ack_topic = app.topic(settings.topic_containment_acks, value_type=bytes, internal=False)

    @app.agent(ack_topic, name="mlsentry-containment-acks")
    async def track_acks(stream: Any) -> None:
        async for raw in stream:
            acks.record(raw)

    class DetectionService(Service):
        """Starts the detection worker with the app (unless it runs already) and stops it before the app's transport."""

        async def on_start(self) -> None:
            if not worker.running:
                await worker.start()

        async def on_stop(self) -> None:
            await worker.stop()

    app.service(DetectionService)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        status, body = health_of(worker)
        return web.json(body, status=status)

    @app.page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        return web.json(stats_of(worker, acks))

    return app
