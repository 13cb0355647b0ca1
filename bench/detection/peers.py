"""Peers side by side: raw River detectors in-process, Frouros and Menelaus in their own venvs.

Every peer watches the per-key signals of ``bench.detection.signals`` with default
settings. An alarm on a signal becomes an ``Alarm`` of the signal's kind and subject. Like
our engine's incident book, a peer alarm on a (kind, subject) within an hour of the last
one it raised there is folded into it (one change, one incident), so peers are not charged
for re-firing. KSWIN (~450 µs per update) only watches the per-minute count and data-change
signals: on every score, feature and error point it alone would take several minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from river import drift

from bench.detection.attacks import Alarm
from bench.detection.signals import Signal

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("peer_runner.py")
PEER_VENVS = {"frouros": REPO / ".venv-peers-frouros", "menelaus": REPO / ".venv-peers-menelaus"}
COOLDOWN_MS = 3_600_000
SLOW_KINDS = frozenset({"download_burst", "query_burst", "label_shift", "volume_spike"})


@dataclass
class PeerRun:
    """One peer detector's alarms on one scenario."""

    name: str
    alarms: list[Alarm] = field(default_factory=list)
    seconds: float = 0.0
    updates: int = 0
    failed_signals: int = 0
    note: str = ""


def _river_detectors() -> dict[str, tuple[Callable[[], Any], bool]]:
    """name -> (factory, watches high-rate signals too)."""
    return {"river.ADWIN": (drift.ADWIN, True), "river.PageHinkley": (drift.PageHinkley, True),
            "river.KSWIN": (lambda: drift.KSWIN(seed=1), False)}


def run_river(signals: Sequence[Signal]) -> list[PeerRun]:
    runs = []
    for name, (factory, all_signals) in _river_detectors().items():
        run = PeerRun(name, note="" if all_signals else "count and data-change signals only (cost)")
        started = time.perf_counter()
        for signal in signals:
            if not all_signals and signal.kind not in SLOW_KINDS:
                continue
            detector, found = factory(), []
            for index, value in enumerate(signal.values):
                detector.update(value)
                if detector.drift_detected:
                    found.append(index)
            run.updates += len(signal.values)
            run.alarms += to_alarms(name, signal, found)
        run.seconds = time.perf_counter() - started
        runs.append(run)
    return runs


def peer_python(library: str) -> Path | None:
    python = PEER_VENVS[library] / "bin" / "python"
    return python if python.exists() else None


def run_external(library: str, signals: Sequence[Signal]) -> list[PeerRun]:
    """Frouros or Menelaus through ``peer_runner.py`` in its venv; [] when it is not installed."""
    python = peer_python(library)
    if python is None:
        return []
    request = {"library": library, "signals": [
        {"id": index, "values": signal.values, "binary": signal.binary} for index, signal in enumerate(signals)]}
    completed = subprocess.run([str(python), str(RUNNER)], input=json.dumps(request), capture_output=True,
                               text=True, check=False)
    if completed.returncode != 0:
        print(f"peer {library} failed: {completed.stderr[-800:]}", file=sys.stderr)
        return [PeerRun(f"{library}.*", note=f"runner failed: {completed.stderr.strip()[-200:]}")]
    reply = json.loads(completed.stdout)
    runs = []
    for name, result in reply["detectors"].items():
        full_name = f"{library}.{name}"
        run = PeerRun(full_name, seconds=result["seconds"], updates=result["updates"],
                      failed_signals=result["failed_signals"], note=result["failure"])
        for signal_id, found in result["alarms"].items():
            run.alarms += to_alarms(full_name, signals[int(signal_id)], found)
        runs.append(run)
    return runs


def to_alarms(source: str, signal: Signal, indices: Sequence[int]) -> list[Alarm]:
    return [Alarm(source, signal.kind, signal.ts[i], signal.positions[i], signal.subject) for i in indices]


def fold(alarms: Sequence[Alarm], cooldown_ms: int = COOLDOWN_MS) -> list[Alarm]:
    """One alarm per (kind, subject) per ``cooldown_ms``: what an incident book would open."""
    last: dict[tuple[str, str], int] = {}
    kept = []
    for alarm in sorted(alarms, key=lambda item: (item.ts, item.position)):
        key = (alarm.kind, json.dumps(alarm.subject, sort_keys=True))
        if key in last and alarm.ts - last[key] < cooldown_ms:
            continue
        last[key] = alarm.ts
        kept.append(alarm)
    return kept


def run_peers(signals: Sequence[Signal], libraries: Sequence[str] = ("frouros", "menelaus")) -> list[PeerRun]:
    runs = run_river(signals)
    for library in libraries:
        runs += run_external(library, signals)
    for run in runs:
        run.alarms = fold(run.alarms)
    return runs


def peer_versions() -> dict[str, str]:
    """Installed peer versions (``not installed`` when the venv is absent)."""
    from importlib.metadata import version

    versions = {"river": version("river")}
    for library in PEER_VENVS:
        python = peer_python(library)
        if python is None:
            versions[library] = "not installed"
            continue
        completed = subprocess.run([str(python), "-c", f"from importlib.metadata import version; "
                                                       f"print(version('{library}'))"],
                                   capture_output=True, text=True, check=False)
        versions[library] = completed.stdout.strip() or "broken venv"
    return versions
