"""The engine over a mixed seeded stream: one incident per injected problem, replayable ids."""

from __future__ import annotations

from collections import Counter

import pytest

from detectors._testing import MINUTE_MS, T0, mixed_stream
from detectors.containment import ContainmentPolicy
from detectors.engine import Engine, EngineOutput

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def output() -> EngineOutput:
    return Engine().process_many(mixed_stream(seed=1))


def test_each_injected_problem_yields_exactly_one_incident(output: EngineOutput) -> None:
    first_states = {incident.incident_id: incident for incident in reversed(output.incidents)}
    assert Counter(incident.kind for incident in first_states.values()) == {
        "prediction_drift": 1,
        "download_burst": 1,
        "label_shift": 1,
        "unapproved_change": 1,  # the poisoned change is also unapproved: same dataset, another kind
    }
    by_kind = {incident.kind: incident for incident in first_states.values()}
    drift, burst, shift = by_kind["prediction_drift"], by_kind["download_burst"], by_kind["label_shift"]
    assert (drift.model_id, drift.model_version) == ("churn", "v1")
    assert drift.window_start >= T0 + 1_400_000 and drift.detected_at == T0 + 1_529_000  # shift at 1500 s
    assert burst.principal == "u3" and T0 + 40 * MINUTE_MS <= burst.detected_at < T0 + 41 * MINUTE_MS
    assert shift.dataset == "transactions" and shift.evidence["version"] == "v9"


def test_replay_into_a_fresh_engine_gives_identical_incidents(output: EngineOutput) -> None:
    replayed = Engine().process_many(mixed_stream(seed=1))
    assert [i.incident_id for i in replayed.incidents] == [i.incident_id for i in output.incidents]
    assert [i.to_record() for i in replayed.incidents] == [i.to_record() for i in output.incidents]
    assert [c.to_record() for c in replayed.commands] == [c.to_record() for c in output.commands]


def test_event_by_event_equals_batch(output: EngineOutput) -> None:
    engine, streamed = Engine(), EngineOutput()
    for event in mixed_stream(seed=1):
        streamed.extend(engine.process(event))
    assert [i.incident_id for i in streamed.incidents] == [i.incident_id for i in output.incidents]


def test_containment_is_dry_run_deterministic_and_expiring(output: EngineOutput) -> None:
    reverts = [c for c in output.commands if c.action == "revert"]
    assert {r.revert_of for r in reverts} <= {c.command_id for c in output.commands}
    assert {(c.action, c.target) for c in output.commands if c.action != "revert"} == {
        ("hold_for_review", "churn:v1"),
        ("throttle", "u3"),
        ("force_reauth", "u3"),
        ("freeze_dataset", "transactions"),
        ("pause_retraining", "transactions"),
    }
    incident_ids = {incident.incident_id for incident in output.incidents}
    for command in output.commands:
        assert command.mode == "dry_run" and (command.reversible or command.action == "revert")
        assert command.expires_at > command.issued_at
        assert command.incident_id in incident_ids
    assert len({c.command_id for c in output.commands}) == len(output.commands)


def test_allow_listed_principal_is_not_contained() -> None:
    engine = Engine(policy=ContainmentPolicy(allow_list=frozenset({"u3"})))
    result = engine.process_many(mixed_stream(seed=1))
    assert "download_burst" in {incident.kind for incident in result.incidents}
    assert all(command.target != "u3" for command in result.commands)


def test_healthy_mixed_stream_gives_no_incidents() -> None:
    events = [event for event in mixed_stream(seed=1) if event.ts < T0 + 20 * MINUTE_MS]
    assert Engine().process_many(events).incidents == []


@pytest.mark.parametrize("batch_size", [1, 5, 333, 100_000])
def test_micro_batches_give_exactly_what_event_by_event_gives(batch_size: int) -> None:
    """``process_many`` (micro-batches) and ``process`` per event produce the same outputs in the same order."""
    events = mixed_stream(seed=2)
    engine, streamed = Engine(), EngineOutput()
    for event in events:
        engine.process(event, streamed)
    batched = Engine().process_many(events, batch_size=batch_size)
    assert batched.incidents and batched == streamed
