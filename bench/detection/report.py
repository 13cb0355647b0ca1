"""Tables and target checks from scored scenarios (markdown, printed and written to bench/results)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from bench.detection.evaluate import SUITE, ScenarioResult, Scored, restricted
from bench.detection.metrics import Detection, Matching, Summary, median_delay_with_misses, summarize

ABRUPT_TARGET_S = 120.0
CLEAN_TARGET_PER_DAY = 1.0
CLEAN = "clean"


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _summary_cells(summary: Summary) -> list[str]:
    recall = "-" if summary.recall is None else f"{summary.caught}/{summary.attacks}"
    return [recall, _num(summary.median_delay_s), _num(summary.median_delay_events, 0), str(summary.false_alarms),
            _num(summary.false_per_day, 2), _num(summary.false_per_100k, 2), f"{summary.repeats}/{summary.collateral}",
            _num(summary.events_per_s, 0)]


SUMMARY_HEADER = ["caught", "median delay s", "median delay events", "false alarms", "FA/day", "FA/100k ev",
                  "repeats/late", "events/s"]


def kinds_of(results: Sequence[ScenarioResult]) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for result in results:
        for name, found in result.detector_kinds.items():
            kinds.setdefault(name, set()).update(found)
    return kinds


def scenario_table(results: Sequence[ScenarioResult]) -> list[str]:
    """Detector/peer × scenario. Our detectors: recall over attacks of their own kinds."""
    kinds = kinds_of(results)
    rows = []
    for result in results:
        for name, scored in result.ours.items():
            wanted = None if name == SUITE else kinds.get(name, set())
            summary = result.summary(scored, wanted)
            if name == SUITE or summary.attacks or summary.false_alarms:
                rows.append([result.name, f"**{name}**" if name == SUITE else name] + _summary_cells(summary))
        for name, scored in result.peers.items():
            rows.append([result.name, name] + _summary_cells(result.summary(scored)))
    return _table(["scenario", "detector / peer"] + SUMMARY_HEADER, rows)


def total(results: Sequence[ScenarioResult], pick: Callable[[ScenarioResult], Matching | None],
          seconds: float, kinds: Iterable[str] | None = None) -> Summary:
    matchings = [m for m in (pick(r) for r in results) if m is not None]
    return summarize(matchings, sum(r.events for r in results), sum(r.days for r in results), seconds, kinds)


def _scored(result: ScenarioResult, name: str) -> Scored | None:
    return result.ours.get(name) or result.peers.get(name)


def _matching(result: ScenarioResult, name: str) -> Matching | None:
    scored = _scored(result, name)
    return scored.matching if scored is not None else None


def overall_table(results: Sequence[ScenarioResult]) -> list[str]:
    names = list(dict.fromkeys(n for r in results for n in [*r.ours, *r.peers]))
    kinds = kinds_of(results)
    rows = []
    for name in names:
        seconds = sum(s.seconds for r in results if (s := _scored(r, name)))
        wanted = None if name == SUITE or name not in kinds else kinds[name]
        summary = total(results, lambda r: _matching(r, name), seconds, wanted)
        clean = [(r, s) for r in results if r.name == CLEAN and (s := _scored(r, name)) is not None]
        clean_fa = _num(clean[0][0].summary(clean[0][1]).false_per_day, 2) if clean else "-"
        label = ", ".join(sorted(kinds.get(name, ()))) if name in kinds else ("all" if name == SUITE else "its signals")
        rows.append([name, label] + _summary_cells(summary) + [clean_fa])
    return _table(["detector / peer", "judged on kinds"] + SUMMARY_HEADER + ["FA/day on clean"], rows)


def peer_false_per_day(results: Sequence[ScenarioResult]) -> dict[str, float]:
    days = sum(r.days for r in results) or 1.0
    totals: dict[str, float] = {}
    for result in results:
        for name, scored in result.peers.items():
            totals[name] = totals.get(name, 0.0) + len(scored.matching.false_alarms) / days
    return totals


def attack_table(results: Sequence[ScenarioResult]) -> list[str]:
    peer_fa = peer_false_per_day(results)
    rows = []
    for result in results:
        suite = result.ours[SUITE].matching.detections
        for index, detection in enumerate(suite):
            attack = detection.attack
            peer_hits = [(s.matching.detections[index], name) for name, s in result.peers.items()
                         if s.matching.detections[index].caught]
            best = min(peer_hits, key=lambda hit: hit[0].delay_ms or 0, default=None)
            rows.append([
                result.name, attack.attack_id, attack.kind, attack.shape, attack.size,
                detection.alarm.source if detection.alarm else "**MISSED**",
                _num(detection.delay_ms / 1000 if detection.delay_ms is not None else None),
                str(detection.delay_events) if detection.delay_events is not None else "-",
                f"{len(peer_hits)}/{len(result.peers)}",
                f"{best[1]} {_num((best[0].delay_ms or 0) / 1000)} s ({peer_fa[best[1]]:.0f} FA/day)" if best else "-",
            ])
    return _table(["scenario", "attack", "kind", "shape", "size", "caught by (ours)", "delay s", "delay events",
                   "peers caught", "fastest peer"], rows)


@dataclass
class Target:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"- **{'PASS' if self.passed else 'FAIL'}** {self.name}: {self.detail}"


def all_detections(results: Sequence[ScenarioResult]) -> list[tuple[str, Detection]]:
    return [(r.name, d) for r in results for d in r.ours[SUITE].matching.detections]


def targets(results: Sequence[ScenarioResult]) -> list[Target]:
    detections = all_detections(results)
    missed = [f"{scenario}/{d.attack.attack_id} ({d.attack.kind})" for scenario, d in detections if not d.caught]
    checks = [Target("every injected attack caught", not missed and bool(detections),
                     f"{len(detections) - len(missed)}/{len(detections)} caught"
                     + (f"; missed: {', '.join(missed)}" if missed else ""))]
    clean = [r for r in results if r.name == CLEAN]
    if clean:
        summary = clean[0].summary(clean[0].ours[SUITE])
        by_source = ", ".join(f"{a.source}:{a.kind}" for a in clean[0].ours[SUITE].matching.false_alarms[:12])
        checks.append(Target(f"<= {CLEAN_TARGET_PER_DAY:g} false alarm per day on the clean stream (whole suite)",
                             summary.false_per_day <= CLEAN_TARGET_PER_DAY,
                             f"{summary.false_alarms} false alarms in {summary.days:.2f} days = "
                             f"{summary.false_per_day:.2f}/day" + (f" ({by_source})" if by_source else "")))
    abrupt = [d for _, d in detections if d.attack.shape == "abrupt"]
    median = median_delay_with_misses(abrupt)
    slow = [f"{d.attack.attack_id} {_num(d.delay_ms / 1000 if d.delay_ms is not None else math.inf)} s"
            for d in abrupt if d.delay_ms is None or d.delay_ms >= ABRUPT_TARGET_S * 1000]
    checks.append(Target(f"median delay < {ABRUPT_TARGET_S:g} s event time for abrupt attacks", median < ABRUPT_TARGET_S,
                         f"median {_num(median)} s over {len(abrupt)} abrupt attacks (misses count as inf); "
                         f"at or over target: {', '.join(slow) or 'none'}"))
    checks.append(peer_target(results))
    return checks


def summarize_delays(delays: list[int]) -> float:
    return statistics.median(delays) / 1000.0


def compare_detector(results: Sequence[ScenarioResult], name: str, kinds: set[str]) -> tuple[bool, str]:
    """Our detector vs every peer at equal or lower false-alarm rate on the same kinds' signals."""
    days = sum(r.days for r in results)
    ours = [r.ours[name].matching if name in r.ours else Matching() for r in results]
    ours_fa = sum(len(m.false_alarms) for m in ours) / days
    ours_caught = sum(d.caught for m in ours for d in m.detections if d.attack.kind in kinds)
    verdicts = []
    peers = list(dict.fromkeys(p for r in results for p in r.peers))
    for peer in peers:
        matchings = [restricted(r, r.peers[peer], kinds) if peer in r.peers else Matching() for r in results]
        peer_fa = sum(len(m.false_alarms) for m in matchings) / days
        peer_caught = sum(d.caught for m in matchings for d in m.detections if d.attack.kind in kinds)
        if peer_caught == 0 or peer_fa > ours_fa:
            continue
        ours_delay, peer_delay = _pooled_common(ours, matchings, kinds)
        better = peer_caught > ours_caught or (peer_delay is not None and ours_delay is not None
                                               and peer_delay < ours_delay)
        verdicts.append((better, f"{peer} caught {peer_caught} vs {ours_caught} at {peer_fa:.2f} vs "
                                 f"{ours_fa:.2f} FA/day; common median delay {_num(peer_delay)} vs {_num(ours_delay)} s"))
    losses = [text for better, text in verdicts if better]
    if losses:
        return False, "; ".join(losses)
    return True, f"no peer at <= {ours_fa:.2f} FA/day does better" + (f" ({len(verdicts)} compared)" if verdicts else "")


def _pooled_common(ours: list[Matching], peers: list[Matching], kinds: set[str]) -> tuple[float | None, float | None]:
    pairs = [(a.delay_ms, b.delay_ms) for o, p in zip(ours, peers) for a, b in zip(o.detections, p.detections)
             if a.attack.kind in kinds and a.delay_ms is not None and b.delay_ms is not None]
    if not pairs:
        return None, None
    return summarize_delays([a for a, _ in pairs]), summarize_delays([b for _, b in pairs])


def peer_target(results: Sequence[ScenarioResult]) -> Target:
    if not any(r.peers for r in results):
        return Target("each detector at least as good as the best peer", False, "not measured (peers not run)")
    kinds = kinds_of(results)
    failures: list[str] = []
    passes: list[str] = []
    for name in sorted(kinds):
        judged = set(kinds[name])
        if not any(d.attack.kind in judged for r in results for d in r.ours[SUITE].matching.detections):
            continue
        ok, detail = compare_detector(results, name, judged)
        (passes if ok else failures).append(f"{name}: {detail}")
    compared = len(failures) + len(passes)
    detail = f"{len(failures)} of {compared} detectors lose to a peer" if failures else f"{compared} detectors compared"
    detail += "".join(f"\n  - {line}" for line in failures + passes)
    return Target("each detector at least as good as the best peer on delay at equal or lower FA rate",
                  not failures, detail)


def render(results: Sequence[ScenarioResult], header: Sequence[str]) -> tuple[str, list[Target]]:
    checks = targets(results)
    lines = list(header)
    lines += ["", "## Targets", ""] + [check.line() for check in checks]
    lines += ["", "## Each detector and peer over all scenarios", ""] + overall_table(results)
    lines += ["", "## Each attack", ""] + attack_table(results)
    lines += ["", "## Detector / peer × scenario", ""] + scenario_table(results)
    return "\n".join(lines) + "\n", checks
