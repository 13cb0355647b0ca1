"""Scale-out: two worker processes in one group split the partitions; killing one moves its
partitions *and their detector state* (snapshots) to the other.

chDB allows one process per directory, so each worker writes to its own chDB directory
(its own store) and the assertions run over the union of both stores.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.simulator import SimulationConfig, simulate
from streams.topics import ensure_topics
from tests.conftest import isolated_settings
from tests.integration.worker_harness import caught_up, publish, start_worker, stop_worker, stored_incidents, wait_until

pytestmark = pytest.mark.integration
KILL_AT_S = 5500  # mid score drift: only restored state catches it (see test_recovery.py)


def _owned(log: str, settings) -> set[str]:
    """The partitions of a worker's latest assignment (every rebalance logs the whole assignment)."""
    assignments = re.findall(r"assignment: ?(.*)", log)
    return set(assignments[-1].split()) if assignments else set()


async def test_two_workers_split_partitions_and_state_moves_when_one_dies(embedded_broker, tmp_path: Path):
    bootstrap = embedded_broker.bootstrap_servers
    base = isolated_settings(tmp_path, bootstrap, snapshot_key="scale-out-key", snapshot_every_events=1500,
                             snapshot_every_s=1.0, batch_size=500,
                             session_timeout_s=6.0)  # no spurious rebalances when CI shares the CPU
    base = base.replace(topic_snapshots=f"{base.group_id}.snapshots")
    workers = {name: base.replace(data_dir=str(tmp_path / name), clickhouse_dsn=f"chdb://{tmp_path / name / 'chdb'}")
               for name in ("a", "b")}
    await ensure_topics(base, bootstrap)
    scenario = simulate(SimulationConfig(seed=11))
    cut = SimulationConfig().start_ms + KILL_AT_S * 1000
    before = [r for r in scenario.records if r["event"]["ts"] < cut]
    after = [r for r in scenario.records if r["event"]["ts"] >= cut]
    logs = {name: tmp_path / f"worker-{name}.log" for name in workers}
    processes = {name: start_worker(settings, logs[name]) for name, settings in workers.items()}
    try:
        def split() -> bool:
            owned = {name: {p for p in _owned(logs[name].read_text(), base)} for name in workers}
            return all(owned.values()) and not (owned["a"] & owned["b"]) and len(owned["a"] | owned["b"]) == 6
        await wait_until(split, 90, "both workers to own partitions", poll_s=0.5)
        await publish(base, bootstrap, before)
        await wait_until(lambda: caught_up(base, bootstrap), 120, "both workers to commit part one")
        await wait_until(split, 30, "a stable split", poll_s=0.5)
        owner = next(name for name in workers if f"{base.topic_predictions}-0" in _owned(logs[name].read_text(), base))
        survivor = "b" if owner == "a" else "a"
        print(f"\nscale-out: {owner} owns {sorted(_owned(logs[owner].read_text(), base))}, "
              f"{survivor} owns {sorted(_owned(logs[survivor].read_text(), base))}; killing {owner}")
        processes[owner].kill()
        processes[owner].wait(timeout=10)
        await publish(base, bootstrap, after)
        await wait_until(lambda: caught_up(base, bootstrap), 180, "the survivor to take over and catch up")
    finally:
        for process in processes.values():
            if process.poll() is None:
                stop_worker(process)
    survivor_log = logs[survivor].read_text()
    assert re.search(rf"partition {re.escape(base.topic_predictions)}-0: restored from snapshot", survivor_log), \
        "the dead worker's partition came back with its state"
    rows = stored_incidents(workers["a"].resolved_clickhouse_dsn) + stored_incidents(workers["b"].resolved_clickhouse_dsn)
    kinds = {kind for _, kind in rows}
    assert {"download_burst", "prediction_drift", "label_shift", "unapproved_change"} <= kinds
