"""`make bench`: issue 6's measurements side by side in one run, written to bench/results/.

python -m bench.perf [--events N] [--quick] [--skip-scaling] [--skip-memory] [--skip-recovery]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from bench.perf import measure
from bench.perf.recovery import recovery
from bench.perf.workload import build_workload
from streams.broker import EmbeddedBroker
from streams.settings import Settings

RESULTS = Path(__file__).resolve().parents[1] / "results"
#: The scaling run's second workload serves each demo model as this many separate models.
FLEET_TENANTS = 8


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    workload = build_workload(args.events)
    print(f"workload: {len(workload.events)} events", flush=True)
    # First, on a quiet machine: replay uses no broker, and after the other measurements a broker holds
    # every topic and this process's chDB may still be merging (replay read 96.9k events/s there in one run,
    # 121k on its own minutes later).
    results["replay"] = measure.replay_throughput(workload, Settings.load(environ={}))
    print("replay", results["replay"], flush=True)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="mlsentry-bench-") as tmp:
        bootstrap = broker.bootstrap_servers
        settings = measure.bench_settings(bootstrap, "e2e", Path(tmp) / "e2e")
        results["publish_s"] = await measure.publish_workload(settings, bootstrap, workload)
        results["transport"] = measure.transport_ceiling(settings, bootstrap, len(workload.messages))
        print("transport", results["transport"], flush=True)
        # The better of two runs, as for the ceiling it is compared with (each run: a new group, a new chDB).
        runs = [await measure.worker_end_to_end(measure.bench_settings(bootstrap, "e2e", Path(tmp) / f"e2e-{run}",
                                                                       group_id=f"bench-e2e-{run}"),
                                                bootstrap, len(workload.messages))
                for run in range(2)]
        results["worker"] = max(runs, key=lambda run: run["events_per_s"])
        results["worker"]["runs_events_per_s"] = [run["events_per_s"] for run in runs]
        print("worker", results["worker"], flush=True)
        rate = max(100.0, results["worker"]["events_per_s"] / 2)
        latency_settings = measure.bench_settings(bootstrap, "lat", Path(tmp) / "lat")
        results["latency"] = await measure.detection_latency(latency_settings, bootstrap, "lat", rate, args.latency_s,
                                                             args.events)
        results["latency"]["rate_per_s"] = rate
        print("latency", results["latency"], flush=True)
        if not args.skip_recovery:
            for membership, instance_id in (("dynamic", ""), ("static", "bench-worker-1")):
                tag = f"rec-{membership}"
                results[f"recovery_{membership}"] = await recovery(bootstrap, workload, Path(tmp) / tag, tag,
                                                                   instance_id)
                print(f"recovery {membership}", results[f"recovery_{membership}"], flush=True)
        if not args.skip_scaling:
            fleet = build_workload(args.events, tenants=FLEET_TENANTS)
            for name, scaled in (("demo", workload), ("fleet", fleet)):
                for processes in (1, 2):
                    tag = f"scale-{name}{processes}"
                    scale_settings = measure.bench_settings(bootstrap, tag, Path(tmp) / tag)
                    await measure.publish_workload(scale_settings, bootstrap, scaled)
                    results[f"scaling_{name}_{processes}"] = measure.scaling(bootstrap, len(scaled.messages),
                                                                            processes, tag)
                    print(f"scaling {name} {processes}", results[f"scaling_{name}_{processes}"], flush=True)
    if not args.skip_memory:
        results["memory"] = measure.memory_in_fresh_process(args.principals, 10_000)
        print("memory", results["memory"], flush=True)
    return results


def _table(results: dict[str, Any], args: argparse.Namespace) -> str:
    transport, worker, replay = results["transport"], results["worker"], results["replay"]
    rows = [
        ("1. transport ceiling (raw aiokafka getmany)", f"{transport['events_per_s']:,.0f} events/s",
         f"a fresh process with the worker's collector settings; better of two drains "
         f"({', '.join(f'{rate:,.0f}' for rate in transport['drains_events_per_s'])})"),
        ("2. worker end to end (decode, all detectors, chDB, Kafka outputs)", f"{worker['events_per_s']:,.0f} events/s",
         f"{worker['events_per_s'] / transport['events_per_s']:.1%} of (1); better of two runs "
         f"({', '.join(f'{rate:,.0f}' for rate in worker['runs_events_per_s'])}); group join + start {worker['startup_s']:.1f} s "
         f"(session timeout {worker['session_timeout_s']:g} s: tansu holds a join for about half of it); target >= 25%"),
        ("3. replay (`mlsentry replay` on a JSONL file, all detectors, no broker)",
         f"{replay['events_per_s']:,.0f} events/s",
         f"the CLI's own figure in a fresh process ({replay['process_s']:.1f} s with interpreter start-up); "
         f"engine alone {replay['engine_events_per_s']:,.0f} events/s; target >= 100,000"),
    ]
    latency = results["latency"]
    if latency.get("samples"):
        rows.append((f"4. detection latency at {latency['rate_per_s']:,.0f} events/s",
                     f"p50 {latency['p50_s'] * 1000:.0f} ms, p99 {latency['p99_s'] * 1000:.0f} ms",
                     f"{latency['samples']} attacks; {latency['published'] / args.latency_s:,.0f} events/s published by a separate "
                     f"process; publish of decisive event -> row flushed in chDB + command acked; target p99 <= 1 s"))
    if "memory" in results:
        memory = results["memory"]
        rows.append((f"5. memory after {memory['principals']:,} principals + {memory['segments']:,} segments",
                     f"{memory['bytes_per_tracked_principal']:,.0f} bytes per tracked principal; "
                     f"{memory['rss_after_segments_mb']:,.0f} MB RSS in all",
                     f"per tracked principal measured at {memory['tracked_principals']:,} (all held); past that each "
                     f"per-principal detector evicts its least recently seen, so RSS stays bounded "
                     f"(baseline {memory['rss_before_mb']:,.0f} MB); target <= 1 KB"))
    for name, what in (("demo", "demo mix, 3 models"), ("fleet", f"fleet, {3 * FLEET_TENANTS} models")):
        for processes in (1, 2):
            scale = results.get(f"scaling_{name}_{processes}")
            if scale:
                rows.append((f"6. scaling ({what}): {processes} worker process(es), one group",
                             f"{scale['events_per_s']:,.0f} events/s", f"{scale['events']:,} events"))
    for membership, how in (("dynamic", "dynamic membership (default)"),
                            ("static", "static membership (MLSENTRY_GROUP_INSTANCE_ID)")):
        rec = results.get(f"recovery_{membership}")
        if rec:
            rows.append((f"7. recovery after SIGKILL mid-stream, {how}",
                         f"resumed in {rec['resumed_s']:.1f} s; {rec['backlog_at_kill']:,}-event backlog caught up in "
                         f"{rec['recovered_s']:.1f} s",
                         f"from the restart of the process: start, group join (session timeout "
                         f"{rec['session_timeout_s']:g} s), snapshot restore "
                         f"({'yes' if rec['restored_from_snapshot'] else 'NO'}), replay since the snapshot, backlog"))
    lines = [f"# mlsentry benchmark, {args.date}", "", f"Machine: {_machine()}", "",
             f"Command: `make bench` (`python -m bench.perf --events {args.events}`); workload: "
             f"{worker['events']:,} mixed events of the demo's traffic (Avro), 4 partitions per topic, embedded tansu broker, chDB.",
             "", "| measurement | result | notes |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {note} |" for name, value, note in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.perf")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--principals", type=int, default=1_000_000)
    parser.add_argument("--latency-s", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="30k events, 100k principals, no scaling run")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--date", default=dt.date.today().isoformat())
    args = parser.parse_args()
    if args.quick:
        args.events, args.principals, args.skip_scaling, args.latency_s = 30_000, 100_000, True, 10.0
        args.skip_recovery = True
    results = asyncio.run(_run(args))
    table = _table(results, args)
    print("\n" + table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"perf-{args.date}.md").write_text(table)


if __name__ == "__main__":
    main()
