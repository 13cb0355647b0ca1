"""The traffic simulator is seeded, time-ordered and carries its ground truth."""

from __future__ import annotations

import pytest

from streams.simulator import SimulationConfig, simulate

pytestmark = pytest.mark.unit


def test_same_seed_same_traffic_and_event_time_order():
    config = SimulationConfig(seed=3, duration_s=1800)
    first, second = simulate(config), simulate(config)
    assert first.records == second.records
    timestamps = [record["event"]["ts"] for record in first.records]
    assert timestamps == sorted(timestamps)


def test_all_three_streams_and_attacks_are_present():
    scenario = simulate(SimulationConfig(seed=5))
    assert set(scenario.counts) == {"prediction", "access", "data_change"}
    assert [attack.kind for attack in scenario.attacks] == [
        "download_burst", "query_burst", "prediction_drift", "label_shift", "prediction_drift"]
    deploys = [r for r in scenario.records if r["type"] == "access" and r["event"]["action"] == "deploy"]
    assert len(deploys) == 3 and all(r["event"]["attributes"]["artifact_hash"].startswith("sha256:") for r in deploys)
    poisoned = [r for r in scenario.records if r["type"] == "data_change" and r["event"]["actor"] == "mallory"]
    assert len(poisoned) == 1 and poisoned[0]["event"]["approved_by"] is None
