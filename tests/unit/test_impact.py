"""Impact tiers: severity = detector strength x tier; unknown assets get the default tier."""

from __future__ import annotations

import pytest

from detectors.impact import Asset, ImpactTiers
from detectors.incidents import EngineOutput, IncidentBook
from tests.unit.incident_helpers import finding

pytestmark = pytest.mark.unit

TIERS = ImpactTiers(models={"fraud": Asset("fraud", "critical", ("risk-oncall",)), "ranker": Asset("ranker", "low")},
                    datasets={"clicks": Asset("clicks", "low", ("data-team",))})


@pytest.mark.parametrize(("model_id", "severity", "tier"), [
    ("fraud", "high", "critical"), ("ranker", "low", "low"), ("unknown", "medium", "medium")])
def test_severity_scales_with_the_tier_of_the_model(model_id, severity, tier):
    output = EngineOutput()
    IncidentBook(tiers=TIERS).handle(finding("prediction_drift", strength=0.5, model_id=model_id), output)
    assert (output.incidents[0].severity, output.incidents[0].impact_tier) == (severity, tier)


def test_a_dataset_takes_the_highest_tier_of_itself_and_its_consumers():
    shift = finding("label_shift", dataset="clicks", evidence={"consumers": "ranker,fraud"})
    assert TIERS.tier_of(shift) == "critical"
    assert TIERS.owners_of(shift) == ("data-team", "risk-oncall")


def test_default_tier_is_configurable_and_validated():
    assert ImpactTiers(default_tier="high").tier_of(finding()) == "high"
    with pytest.raises(ValueError):
        ImpactTiers(default_tier="huge")
    with pytest.raises(ValueError):
        Asset("m", "urgent")
