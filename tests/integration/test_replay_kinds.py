"""`mlsentry replay` over the evaluation's labeled scenarios reports every incident kind of the contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.detection.scenarios import synthetic_scenarios
from detectors.findings import INCIDENT_KINDS
from tests.integration.test_cli import mlsentry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_replay_output_carries_every_incident_kind(tmp_path: Path) -> None:
    kinds: set[str] = set()
    for scenario in synthetic_scenarios(quick=True):
        if not scenario.attacks:
            continue  # the clean stream has nothing to report
        events, incidents = tmp_path / f"{scenario.name}.jsonl", tmp_path / f"{scenario.name}.incidents.jsonl"
        events.write_text("".join(json.dumps(record) + "\n" for record in scenario.records))
        mlsentry("replay", "--events", str(events), "--incidents", str(incidents))
        kinds |= {json.loads(line)["kind"] for line in incidents.read_text().splitlines()}
    assert kinds == set(INCIDENT_KINDS)
