"""Store outage: outputs spill to disk, offsets stay uncommitted, commands keep flowing, the backlog drains.

Also the at-least-once rule itself: while the store cannot write, not one input offset is committed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.codec import decode_command, decode_incident
from streams.simulator import SimulationConfig, simulate
from streams.topics import ensure_topics, read_all
from streams.worker import Worker
from tests.conftest import isolated_settings
from tests.integration.worker_harness import caught_up, group_lag, publish, wait_until
from tests.unit.test_spill import FlakySink

pytestmark = pytest.mark.integration


async def test_store_outage_spills_keeps_offsets_uncommitted_and_drains(embedded_broker, tmp_path: Path):
    bootstrap = embedded_broker.bootstrap_servers
    settings = isolated_settings(tmp_path, bootstrap, batch_size=300, sink_retry_max_s=0.5)
    await ensure_topics(settings, bootstrap)
    records = [r for r in simulate(SimulationConfig(seed=11)).records
               if r["event"]["ts"] < SimulationConfig().start_ms + 4000 * 1000]  # includes the download burst
    sink = FlakySink()
    sink.down = True
    worker = Worker(settings, sink, bootstrap)
    await worker.start()
    try:
        await publish(settings, bootstrap, records)
        await wait_until(lambda: worker.stats.events >= len(records), 120, "all events processed during the outage")
        commands = [decode_command(raw) for raw in await read_all(bootstrap, settings.topic_containment)]
        assert any(c["target"] == "contractor-17" for c in commands), "containment commands flow during the outage"
        committed, end = await group_lag(settings, bootstrap)
        assert sum(end.values()) > 0 and not any(committed.values()), "no offset committed"
        spilled = list(Path(settings.resolved_spill_dir).glob("segment-*.jsonl"))
        assert spilled and worker.spill.backlog_segments == len(spilled) and not sink.incidents
        print(f"\nsink outage: {len(spilled)} batches spilled ({worker.spill.backlog_bytes} bytes), "
              f"{worker.stats.sink_retries} failed store writes, {len(commands)} commands published meanwhile")

        sink.down = False
        await wait_until(lambda: caught_up(settings, bootstrap), 60, "the backlog to drain and offsets to commit")
    finally:
        await worker.stop()
    assert not list(Path(settings.resolved_spill_dir).glob("segment-*"))
    published = {decode_incident(raw)["incident_id"] for raw in await read_all(bootstrap, settings.topic_incidents)}
    assert {i.incident_id for i in sink.incidents} == published, "nothing lost"
    assert "download_burst" in {i.kind for i in sink.incidents}
