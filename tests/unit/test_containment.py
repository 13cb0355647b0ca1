"""The containment policy: dry_run by default, deterministic, reversible, time-limited."""

from __future__ import annotations

import pytest

from detectors.containment import ContainmentPolicy
from detectors.findings import Finding, Incident

pytestmark = pytest.mark.unit


def _incident(kind="download_burst", strength=0.8, principal="contractor-17", dataset=None):
    finding = Finding(kind=kind, detector="test", ts=1_000_000, window_start=990_000, window_end=1_000_000,
                      score=9.0, threshold=6.0, strength=strength, summary="s", principal=principal, dataset=dataset)
    return Incident.from_finding(finding)


def test_default_mode_is_dry_run_and_commands_expire():
    commands = ContainmentPolicy().commands_for(_incident())
    assert [c.action for c in commands] == ["throttle", "force_reauth"]
    assert all(c.mode == "dry_run" and c.reversible and c.expires_at == 1_000_000 + 3_600_000 for c in commands)
    assert all("contractor-17" in c.reason for c in commands)


def test_command_ids_are_deterministic_and_distinct_per_step():
    first = ContainmentPolicy().commands_for(_incident())
    again = ContainmentPolicy().commands_for(_incident())
    assert [c.command_id for c in first] == [c.command_id for c in again]
    assert len({c.command_id for c in first}) == 2


def test_kill_switch_forces_dry_run_even_in_enforce_mode():
    commands = ContainmentPolicy(mode="enforce", kill_switch=True).commands_for(_incident())
    assert commands and all(c.mode == "dry_run" for c in commands)
    assert all(c.mode == "enforce" for c in ContainmentPolicy(mode="enforce").commands_for(_incident()))


def test_allow_listed_principals_are_never_throttled():
    assert ContainmentPolicy(allow_list=frozenset({"contractor-17"})).commands_for(_incident()) == []


def test_weak_incidents_earn_no_command():
    assert ContainmentPolicy().commands_for(_incident(strength=0.1)) == []


def test_dataset_incidents_freeze_the_dataset():
    incident = _incident(kind="label_shift", principal=None, dataset="fraud-train")
    assert [(c.action, c.target) for c in ContainmentPolicy().commands_for(incident)] == [
        ("freeze_dataset", "fraud-train"), ("pause_retraining", "fraud-train")]


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError):
        ContainmentPolicy(mode="fire")


def test_oversized_dead_letters_are_truncated_for_kafka_with_a_note():
    from streams.codec import DeadLetter
    from streams.publisher import fit_for_kafka

    big = DeadLetter("t", 0, 5, 1, "message too large", "too_large", b"x" * 2000, "access")
    fitted = fit_for_kafka(big, 100)
    assert fitted.raw == b"x" * 100 and "first 100 of 2000 bytes" in fitted.reason
    small = DeadLetter("t", 0, 5, 1, "bad", "malformed", b"abc", "access")
    assert fit_for_kafka(small, 100) is small
