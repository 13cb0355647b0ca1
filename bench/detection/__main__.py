"""``python -m bench.detection``: the detection-quality evaluation (``make eval``).

Builds every labeled scenario, runs whatever detectors the registry holds and the peers
over each, prints the tables and the PASS/FAIL of each issue-3 target, and writes
``bench/results/detection-<date>.md``. Exit status 0 even when targets fail: the report
is the product; ``--strict`` makes a failed target exit 1.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

from bench.detection.evaluate import ScenarioResult, evaluate_scenario, timed
from bench.detection.ours import discover_detectors
from bench.detection.peers import PEER_VENVS, peer_versions
from bench.detection.real_data import real_scenarios
from bench.detection.report import render
from bench.detection.scenarios import synthetic_scenarios

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6-hour clean stream, 12k Shuttle rows")
    parser.add_argument("--no-peers", action="store_true", help="skip River/Frouros/Menelaus peers")
    parser.add_argument("--no-real", action="store_true", help="skip River's real datasets")
    parser.add_argument("--scenarios", help="comma-separated synthetic scenario names (default: all)")
    parser.add_argument("--detectors", help="comma-separated registry names (default: every registered detector)")
    parser.add_argument("--date", help="date for the results file name, YYYY-MM-DD (default: today)")
    parser.add_argument("--out", type=Path, help="results file (default: bench/results/detection-<date>.md)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    started = time.perf_counter()
    date = args.date or datetime.date.today().isoformat()
    names, import_failures = discover_detectors()
    if args.detectors:
        names = [name.strip() for name in args.detectors.split(",") if name.strip()]
    versions = peer_versions() if not args.no_peers else {}
    external = [library for library in PEER_VENVS if versions.get(library, "not installed") not in
                ("not installed", "broken venv")]
    print(f"detectors ({len(names)}): {', '.join(names)}", flush=True)
    for module, reason in import_failures.items():
        print(f"  could not import detectors.{module}: {reason}", flush=True)
    print("peers: " + (", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "off"), flush=True)
    only = set(args.scenarios.split(",")) if args.scenarios else None
    results: list[ScenarioResult] = []
    sources = [synthetic_scenarios(args.quick, only)] + ([] if args.no_real else [real_scenarios(args.quick)])
    for source in sources:
        for scenario, generate_seconds in timed(source):
            tick = time.perf_counter()
            result = evaluate_scenario(scenario, names, None if args.no_peers else external, generate_seconds)
            results.append(result)
            print(f"  {scenario.name}: {result.events:,} events, {result.days:.2f} days, "
                  f"{len(scenario.attacks)} attacks, generated {generate_seconds:.1f}s, "
                  f"scored {time.perf_counter() - tick:.1f}s", flush=True)
            del scenario
    elapsed = time.perf_counter() - started
    header = _header(date, names, import_failures, versions, args, results, elapsed)
    text, checks = render(results, header)
    print(text)
    out = args.out or RESULTS / f"detection-{date}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({elapsed:.0f} s)")
    return 1 if args.strict and not all(check.passed for check in checks) else 0


def _header(date: str, names: list[str], failures: dict[str, str], versions: dict[str, str],
            args: argparse.Namespace, results: list[ScenarioResult], elapsed: float) -> list[str]:
    events = sum(r.events for r in results)
    days = sum(r.days for r in results)
    lines = [
        f"# Detection evaluation, {date}", "",
        f"`python -m bench.detection{' --quick' if args.quick else ''}{' --no-peers' if args.no_peers else ''}` on "
        f"{platform.python_implementation()} {platform.python_version()}; {len(results)} scenarios, {events:,} events, "
        f"{days:.2f} days of event time; run time {elapsed:.0f} s.", "",
        f"Detectors from the registry ({len(names)}): {', '.join(f'`{n}`' for n in names)}.",
        "Peers: " + (", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "not run") + ".",
        "Alibi Detect: not run (its online detectors calibrate thresholds by simulation, minutes per detector, "
        "and would need one instance per key signal).",
    ]
    lines += [f"Could not import `detectors.{m}`: {r}" for m, r in failures.items()]
    lines += ["", "| scenario | events | days | attacks | description |", "|---|---|---|---|---|"]
    lines += [f"| {r.name} | {r.events:,} | {r.days:.2f} | {len(r.attacks)} | {r.description} |" for r in results]
    return lines


if __name__ == "__main__":
    sys.exit(main())
