"""Containment policy from config: rules by (kind, severity, tier), guard rails, known-good rollbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.containment import ContainmentPolicy, PolicyRule
from detectors.findings import Incident
from detectors.impact import Asset, ImpactTiers
from detectors.incidents import EngineOutput, IncidentBook
from streams.config_files import engine_from_files, load_impact_tiers, load_policy
from tests.unit.incident_helpers import MINUTE, T0, deploy, finding, prediction, tick

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ROLLBACK = PolicyRule("prediction_drift", (("rollback_model", "model"),), "medium", frozenset({"critical"}), "enforce")
TIERS = ImpactTiers(models={"fraud": Asset("fraud", "critical")})


def run(book, *steps):
    output = EngineOutput()
    for step in steps:
        (book.handle if hasattr(step, "strength") else book.observe)(step, output)
    return output


def drift(ts=T0 + 60 * MINUTE, version="v3"):
    return finding("prediction_drift", ts=ts, model_id="fraud", model_version=version)


def incident(found):
    return Incident.from_finding(found)


def test_rules_match_on_kind_severity_and_tier_and_default_to_dry_run():
    policy = ContainmentPolicy(rules=(PolicyRule("download_burst", (("throttle", "principal"),), "high"),))
    assert policy.commands_for(incident(finding(strength=0.5))) == []
    commands = policy.commands_for(incident(finding(strength=0.8)))
    assert [(c.action, c.mode) for c in commands] == [("throttle", "dry_run")]
    assert policy.commands_for(incident(finding("query_burst", strength=0.8))) == []
    tiered = ContainmentPolicy(rules=(ROLLBACK,))
    assert tiered.commands_for(incident(drift()), tier="low") == []
    assert [c.action for c in tiered.commands_for(incident(drift()), tier="critical")] == ["hold_for_review"]


def test_rollback_names_the_last_known_good_version_and_its_hash():
    book = IncidentBook(ContainmentPolicy(rules=(ROLLBACK,)), tiers=TIERS, known_good_after=3)
    steps = [deploy(T0, "fraud", "v2", "sha256:good"), *[prediction(T0 + i, version="v2", index=i) for i in range(1, 4)],
             deploy(T0 + 10 * MINUTE, "fraud", "v3", "sha256:new"), drift()]
    command = run(book, *steps).commands[0]
    assert (command.action, command.target, command.mode) == ("rollback_model", "fraud", "enforce")
    assert (command.params["target_version"], command.params["target_hash"]) == ("v2", "sha256:good")
    assert "v2 (artifact sha256:good) is the last known-good version" in command.reason


def test_never_roll_back_to_an_unknown_version():
    book = IncidentBook(ContainmentPolicy(rules=(ROLLBACK,)), tiers=TIERS, known_good_after=50)
    steps = [deploy(T0, "fraud", "v2", "sha256:good"), *[prediction(T0 + i, version="v2", index=i) for i in range(1, 4)],
             deploy(T0 + 10 * MINUTE, "fraud", "v3", "sha256:new"), drift()]
    command = run(book, *steps).commands[0]
    assert command.action == "hold_for_review" and "never roll back to an unknown version" in command.reason


def test_predictions_during_an_open_incident_do_not_make_a_version_known_good():
    book = IncidentBook(tiers=TIERS, known_good_after=3, quiet_ms=10**9)
    run(book, deploy(T0, "fraud", "v3", "sha256:x"), drift(ts=T0 + 1),
        *[prediction(T0 + 10 + i, index=i) for i in range(10)])
    assert book.versions.rollback_target("fraud", None) is None


def test_at_most_n_enforced_commands_per_target_per_hour_then_dry_run_saying_why():
    policy = ContainmentPolicy(mode="enforce", max_enforce_per_target_per_hour=2,
                               rules=(PolicyRule("*", (("throttle", "principal"),)),))
    book = IncidentBook(policy)
    kinds = ("download_burst", "query_burst", "input_anomaly")
    commands = run(book, *[finding(kind, ts=T0 + i * MINUTE, principal="mallory") for i, kind in enumerate(kinds)]).commands
    assert [c.mode for c in commands] == ["enforce", "enforce", "dry_run"]
    assert "more than 2 enforced commands on mallory within an hour" in commands[2].reason
    later = run(book, finding("unusual_access", ts=T0 + 70 * MINUTE, principal="mallory")).commands
    assert [c.mode for c in later] == ["enforce"]


def test_kill_switch_and_allow_list_hold_whatever_the_rules_say():
    rule = PolicyRule("download_burst", (("throttle", "principal"),), mode="enforce")
    burst = incident(finding())
    assert {c.mode for c in ContainmentPolicy(rules=(rule,)).commands_for(burst)} == {"enforce"}
    assert {c.mode for c in ContainmentPolicy(kill_switch=True, rules=(rule,)).commands_for(burst)} == {"dry_run"}
    assert ContainmentPolicy(allow_list=frozenset({"mallory"}), rules=(rule,)).commands_for(burst) == []


def test_enforced_incidents_are_contained_and_reverts_keep_the_mode():
    policy = ContainmentPolicy(mode="enforce")
    output = run(IncidentBook(policy, quiet_ms=5 * MINUTE), finding(), tick(T0 + 6 * MINUTE))
    assert [i.status for i in output.incidents] == ["contained", "resolved"]
    assert [c.mode for c in output.commands if c.action == "revert"] == ["enforce", "enforce"]


def test_example_config_files_load_and_drive_the_engine(tmp_path: Path):
    tiers = load_impact_tiers(ROOT / "config" / "assets.toml")
    assert tiers.models["fraud"].tier == "critical" and tiers.default_tier == "medium"
    config = load_policy(ROOT / "config" / "policy.toml")
    assert config.policy.mode == "dry_run" and config.policy.rules[0].actions == (("rollback_model", "model"),)
    assert config.book_options["quiet_ms"] == 30 * MINUTE
    engine = engine_from_files([], ROOT / "config" / "assets.toml", ROOT / "config" / "policy.toml")
    assert engine.book.tiers.models["credit"].tier == "high" and engine.book.quiet_ms == 30 * MINUTE
    assert load_policy(ROOT / "config" / "policy.toml", kill_switch=True).policy.kill_switch


@pytest.mark.parametrize("text", ['modee = "enforce"', '[[rules]]\nkind = "x"\nactions = ["throttle"]',
                                  '[[rules]]\nkind = "x"\nactions = ["nuke:principal"]', 'mode = "yolo"'])
def test_bad_policy_files_are_refused(tmp_path: Path, text: str):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ValueError):
        load_policy(path)
