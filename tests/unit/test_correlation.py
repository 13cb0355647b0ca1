"""Cases across streams: data change -> model degradation, theft -> extraction, rollout -> drift."""

from __future__ import annotations

import pytest

from detectors.incidents import EngineOutput, IncidentBook
from tests.unit.incident_helpers import MINUTE, T0, deploy, finding, prediction

pytestmark = pytest.mark.unit

POISON = {"version": "v42", "source": "vendor-upload", "actor": "mallory", "approved_by": "alice",
          "consumers": "fraud,churn", "baseline_proportions": "fraud=0.0300", "new_proportions": "fraud=0.4200"}
DEGRADED = {"baseline_accuracy": "0.94", "recent_accuracy": "0.81"}


def run(book, *steps):
    output = EngineOutput()
    for step in steps:
        (book.handle if hasattr(step, "strength") else book.observe)(step, output)
    return output


def latest(output, incident_id):
    return [i for i in output.incidents if i.incident_id == incident_id][-1]


def test_a_poisoned_data_change_and_the_degradation_it_causes_are_one_case():
    output = run(IncidentBook(),
                 finding("label_shift", dataset="fraud-train", evidence=POISON),
                 finding("segment_degradation", ts=T0 + 20 * MINUTE, model_id="fraud", model_version="v3",
                         segment={"region": "EU", "device": "android"}, evidence=DEGRADED))
    shift_id, drop_id = output.incidents[0].incident_id, output.incidents[1].incident_id
    shift, drop = latest(output, shift_id), latest(output, drop_id)
    assert shift.case_id == drop.case_id is not None
    assert drop.related_incidents == (shift_id,) and shift.related_incidents == (drop_id,)
    for story in (shift.summary, drop.summary):
        assert ("dataset fraud-train version v42 from source vendor-upload by mallory, approved by alice, shifted "
                "labels (fraud=0.0300 -> fraud=0.4200); since then accuracy of fraud:v3 for device=android "
                "region=EU fell from 0.94 to 0.81") in story


def test_a_download_burst_then_a_query_burst_by_the_same_principal_is_one_case():
    output = run(IncidentBook(), finding("download_burst", evidence={"downloads_in_window": "180"}),
                 finding("query_burst", ts=T0 + 30 * MINUTE, principal="mallory"),
                 finding("query_burst", ts=T0 + 31 * MINUTE, principal="bob"))
    by_principal = {}
    for incident in output.incidents:
        by_principal.setdefault((incident.kind, incident.principal), incident)
    theft = latest(output, by_principal[("download_burst", "mallory")].incident_id)
    extraction = latest(output, by_principal[("query_burst", "mallory")].incident_id)
    assert theft.case_id == extraction.case_id is not None
    assert "principal mallory downloaded 180 items in a burst; then principal mallory queried" in extraction.summary
    assert latest(output, by_principal[("query_burst", "bob")].incident_id).case_id is None


def test_incidents_further_apart_than_the_window_are_not_linked():
    output = run(IncidentBook(correlation_window_ms=60 * MINUTE, quiet_ms=10**9),
                 finding("download_burst"), finding("query_burst", ts=T0 + 61 * MINUTE + MINUTE))
    assert {i.case_id for i in output.incidents} == {None}


def test_a_new_version_followed_by_drift_is_a_bad_rollout_case():
    book = IncidentBook()
    steps = [deploy(T0, "credit", "v8", "sha256:abc", principal="release-bot"),
             finding("prediction_drift", ts=T0 + 25 * MINUTE, window_start=T0 + 10 * MINUTE, model_id="credit",
                     model_version="v8", evidence={"baseline_mean": "0.210", "recent_mean": "0.480"})]
    incident = run(book, *steps).incidents[-1]
    assert incident.case_id is not None
    assert ("possible bad rollout: version v8 of credit was deployed by release-bot (artifact sha256:abc); 10 min "
            "later prediction scores of credit:v8 moved from mean 0.210 to 0.480") in incident.summary


def test_cases_are_deterministic_across_replays():
    steps = [finding("label_shift", dataset="fraud-train", evidence=POISON), prediction(T0 + 1),
             finding("prediction_drift", ts=T0 + MINUTE, model_id="fraud", model_version="v3")]
    first, second = run(IncidentBook(), *steps), run(IncidentBook(), *steps)
    assert [i.to_record() for i in first.incidents] == [i.to_record() for i in second.incidents]


def test_an_anchor_arriving_after_its_follower_still_links_them():
    """Partitions interleave: the degradation may be handled before the data change that caused it."""
    output = run(IncidentBook(),
                 finding("segment_degradation", ts=T0 + 20 * MINUTE, model_id="fraud", model_version="v3",
                         evidence=DEGRADED),
                 finding("label_shift", dataset="fraud-train", evidence=POISON),
                 finding("query_burst", ts=T0 + 30 * MINUTE), finding("download_burst", ts=T0 + 31 * MINUTE,
                                                                       window_start=T0 + 5 * MINUTE))
    final = {i.incident_id: i for i in output.incidents}.values()
    by_kind = {i.kind: i for i in final}
    assert by_kind["segment_degradation"].case_id == by_kind["label_shift"].case_id is not None
    assert "since then accuracy of fraud:v3 fell from 0.94 to 0.81" in by_kind["label_shift"].summary
    assert by_kind["query_burst"].case_id == by_kind["download_burst"].case_id is not None
