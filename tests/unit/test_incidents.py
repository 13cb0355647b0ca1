"""Incident lifecycle: one incident per problem, updates, resolution with reverts, bounded memory."""

from __future__ import annotations

import pytest

from detectors.containment import ContainmentPolicy
from detectors.engine import Engine
from detectors.incidents import EngineOutput, IncidentBook
from tests.unit.incident_helpers import MINUTE, T0, finding, prediction, tick

pytestmark = pytest.mark.unit


def run(book: IncidentBook, *steps) -> EngineOutput:
    output = EngineOutput()
    for step in steps:
        if hasattr(step, "kind") and hasattr(step, "strength"):
            book.handle(step, output)
        else:
            book.observe(step, output)
    return output


def test_a_refiring_detector_updates_one_incident_and_severity_only_rises():
    book = IncidentBook()
    output = run(book, finding(strength=0.5), finding(ts=T0 + MINUTE, strength=0.95),
                 finding(ts=T0 + 2 * MINUTE, strength=0.3))
    assert len({incident.incident_id for incident in output.incidents}) == 1
    assert [i.severity for i in output.incidents] == ["medium", "critical", "critical"]
    assert [i.updates for i in output.incidents] == [0, 1, 2]
    assert output.incidents[-1].updated_at == T0 + 2 * MINUTE and output.incidents[-1].detected_at == T0
    assert output.incidents[-1].evidence["findings"] == "3"
    assert "Updated 2 time(s)" in output.incidents[-1].summary
    assert [c.action for c in output.commands] == ["throttle", "force_reauth"], "no second command for the same step"


def test_quiet_signal_resolves_the_incident_and_reverts_every_active_command():
    book = IncidentBook(quiet_ms=30 * MINUTE)
    output = run(book, finding(), tick(T0 + 29 * MINUTE))
    assert all(i.status == "open" for i in output.incidents)
    later = run(book, tick(T0 + 31 * MINUTE))
    assert [i.status for i in later.incidents] == ["resolved"]
    issued = {c.command_id for c in output.commands}
    reverts = later.commands
    assert {r.revert_of for r in reverts} == issued and all(r.action == "revert" for r in reverts)
    assert all("resolved" in r.reason and r.mode == "dry_run" for r in reverts)
    assert "Resolved: the signal has been quiet for 30 min" in later.incidents[0].summary


def test_refire_within_cooldown_reopens_the_same_incident_and_later_opens_a_new_one():
    book = IncidentBook(quiet_ms=10 * MINUTE, cooldown_ms=60 * MINUTE)
    first = run(book, finding(), tick(T0 + 11 * MINUTE))
    reopened = run(book, finding(ts=T0 + 20 * MINUTE, window_start=T0 + 19 * MINUTE))
    assert reopened.incidents[0].incident_id == first.incidents[0].incident_id
    assert reopened.incidents[0].status == "open" and reopened.commands == []
    run(book, tick(T0 + 31 * MINUTE))
    fresh = run(book, finding(ts=T0 + 200 * MINUTE, window_start=T0 + 199 * MINUTE))
    assert fresh.incidents[0].incident_id != first.incidents[0].incident_id
    assert len(fresh.commands) == 2


def test_expired_commands_are_reverted_even_while_the_incident_stays_open():
    book = IncidentBook(ContainmentPolicy(ttl_ms=5 * MINUTE), quiet_ms=120 * MINUTE)
    output = run(book, finding(), tick(T0 + 6 * MINUTE))
    reverts = [c for c in output.commands if c.action == "revert"]
    assert len(reverts) == 2 and all("expired" in r.reason for r in reverts)
    assert all(i.status == "open" for i in output.incidents)


def test_replaying_the_same_steps_gives_identical_ids_and_records():
    steps = [finding(), prediction(T0 + 1), finding(ts=T0 + MINUTE, strength=0.9), tick(T0 + 90 * MINUTE)]
    first, second = run(IncidentBook(), *steps), run(IncidentBook(), *steps)
    assert [i.to_record() for i in first.incidents] == [i.to_record() for i in second.incidents]
    assert [c.to_record() for c in first.commands] == [c.to_record() for c in second.commands]


def test_memory_stays_bounded_when_principals_explode():
    book = IncidentBook(max_open=50)
    output = EngineOutput()
    for index in range(5_000):
        book.handle(finding(ts=T0 + index, principal=f"p{index}"), output)
    assert len(book._tracked) <= 50 and len(book._by_id) <= 50
    assert sum(len(keys) for keys in book._by_asset.values()) <= 50


def test_evidence_is_archived_per_incident_bounded_and_predictions_are_counted():
    book = IncidentBook(max_evidence_per_incident=5)
    drift = finding("prediction_drift", model_id="fraud", model_version="v3", evidence={"n_after": "40"})
    events = [prediction(T0 + i, index=i) for i in range(1, 21)] + [prediction(T0 + 30, version="v2")]
    output = run(book, drift, *events)
    assert len(output.evidence) == 5 and {row.incident_id for row in output.evidence} == {output.incidents[0].incident_id}
    assert output.evidence[0].description.startswith("prediction by fraud:v3")
    assert book.open_incidents[0].affected_predictions == 40 + 20, "other versions are not counted"


def test_incidents_carry_playbook_queries_and_a_plain_language_story():
    incident = run(IncidentBook(), finding(principal="o'hara")).incidents[0]
    assert incident.playbook_id == "PB-ARTIFACT-THEFT"
    assert any("principal = 'o\\'hara'" in sql for sql in incident.investigation_queries)
    assert all(incident.incident_id in sql for sql in incident.investigation_queries[:3])
    assert "Done automatically: throttle o'hara (dry run: logged, not applied" in incident.summary
    assert "mlsentry contain revert" in incident.summary and "Check next (PB-ARTIFACT-THEFT)" in incident.summary


def test_dry_run_is_the_default_for_every_command():
    from detectors._testing import mixed_stream

    commands = Engine().process_many(mixed_stream(seed=1)).commands
    assert commands and {c.mode for c in commands} == {"dry_run"}


@pytest.mark.parametrize("check_every_ms", [0, -10, 0.3, 60_000.0])
def test_the_sweep_interval_must_be_a_positive_int(check_every_ms: object) -> None:
    """observe_many schedules its sweeps on multiples of it: a float or non-positive interval would sweep at
    other times than the boundary rule says, so it is refused."""
    with pytest.raises(ValueError, match="check_every_ms"):
        IncidentBook(check_every_ms=check_every_ms)  # type: ignore[arg-type]
