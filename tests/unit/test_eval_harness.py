"""The evaluation harness's pure parts: matching, metrics, peer folding, signals, scenario ground truth."""

from __future__ import annotations

import pytest

from bench.detection.attacks import Alarm, Attack, alarm_from_incident
from bench.detection.metrics import (
    match, median_delay_with_misses, segment_compatible, start_positions, subject_matches, summarize,
)
from bench.detection.peers import fold
from bench.detection.signals import extract_signals

pytestmark = pytest.mark.unit

MIN = 60_000
CREDIT = {"model_id": "credit", "model_version": "v7"}


def _attack(attack_id: str = "a1", kind: str = "prediction_drift", start: int = 10 * MIN,
            subject: dict | None = None, max_delay: int = 30 * MIN, **extra: object) -> Attack:
    return Attack(attack_id, kind, start, start, subject or CREDIT, max_delay_ms=max_delay, **extra)  # type: ignore


def _alarm(ts: int, kind: str = "prediction_drift", position: int = 0, subject: dict | None = None,
           source: str = "score_drift") -> Alarm:
    return Alarm(source, kind, ts, position, subject if subject is not None else CREDIT)


def test_an_alarm_in_the_window_detects_with_delay_in_time_and_events() -> None:
    result = match([_alarm(12 * MIN, position=150)], [_attack()], {"a1": 100})
    (detection,) = result.detections
    assert detection.caught and detection.delay_ms == 2 * MIN and detection.delay_events == 50
    assert result.false_alarms == [] and result.repeats == 0


def test_alarms_before_the_start_after_the_deadline_or_elsewhere_are_false() -> None:
    alarms = [_alarm(9 * MIN), _alarm(41 * MIN), _alarm(12 * MIN, subject={"model_id": "fraud"}),
              _alarm(12 * MIN, kind="download_burst")]
    result = match(alarms, [_attack()], {"a1": 0})
    assert not result.detections[0].caught
    assert [alarm.ts for alarm in result.false_alarms] == [9 * MIN, 12 * MIN, 12 * MIN, 41 * MIN]


def test_same_family_catches_and_a_second_alarm_is_a_repeat_not_a_false_alarm() -> None:
    alarms = [_alarm(15 * MIN, kind="feature_drift", position=7), _alarm(20 * MIN, position=9)]
    result = match(alarms, [_attack()], {"a1": 5})
    assert result.detections[0].alarm == alarms[0] and result.detections[0].delay_events == 2
    assert result.repeats == 1 and result.false_alarms == []


def test_collateral_alarms_are_neither_detections_nor_false() -> None:
    attack = _attack(kind="query_burst", subject={"principal": "p"}, collateral=(("prediction_drift", CREDIT),))
    result = match([_alarm(11 * MIN)], [attack], {"a1": 0})
    assert result.collateral == 1 and result.false_alarms == [] and not result.detections[0].caught


def test_alarm_goes_to_the_earliest_attack_whose_window_holds_it() -> None:
    first, second = _attack("a1", start=10 * MIN), _attack("a2", start=20 * MIN)
    result = match([_alarm(25 * MIN), _alarm(26 * MIN)], [first, second], {})
    assert [d.caught for d in result.detections] == [True, False] and result.repeats == 1


def test_subject_rules() -> None:
    assert subject_matches(CREDIT, {"model_id": "credit"})  # model-level alarm covers the version
    assert not subject_matches(CREDIT, {"model_id": "credit", "model_version": "v8"})
    assert segment_compatible({"region": "APAC"}, {"region": "APAC", "device": "web"})
    assert not segment_compatible({"region": "APAC"}, {"device": "web"})
    assert not segment_compatible({"region": "APAC"}, None)
    assert not subject_matches({"model_id": "fraud", "segment": {"region": "APAC"}}, {"model_id": "fraud"})


def test_summary_rates_and_medians() -> None:
    attacks = [_attack("a1", start=10 * MIN), _attack("a2", start=100 * MIN, subject={"model_id": "fraud"})]
    alarms = [_alarm(11 * MIN, position=20), _alarm(50 * MIN, position=60),
              _alarm(103 * MIN, position=130, subject={"model_id": "fraud"})]
    result = match(alarms, attacks, {"a1": 10, "a2": 100})
    summary = summarize([result], events=200_000, days=0.5, seconds=4.0)
    assert (summary.caught, summary.attacks, summary.recall) == (2, 2, 1.0)
    assert summary.median_delay_s == 120.0 and summary.median_delay_events == 20.0
    assert summary.false_alarms == 1 and summary.false_per_day == 2.0 and summary.false_per_100k == 0.5
    assert summary.events_per_s == 50_000
    only_fraud = summarize([result], 200_000, 0.5, 4.0, kinds={"feature_drift"})
    assert only_fraud.attacks == 0 and only_fraud.recall is None


def test_clean_stream_every_alarm_is_false() -> None:
    summary = summarize([match([_alarm(MIN), _alarm(2 * MIN)], [], {})], events=50_000, days=2.0, seconds=1.0)
    assert summary.false_alarms == 2 and summary.false_per_day == 1.0 and summary.false_per_100k == 4.0


def test_misses_count_as_infinitely_late_in_the_abrupt_median() -> None:
    result = match([_alarm(11 * MIN)], [_attack("a1"), _attack("a2", subject={"model_id": "x"}),
                                        _attack("a3", subject={"model_id": "y"})], {})
    assert median_delay_with_misses(result.detections) == float("inf")
    result = match([_alarm(11 * MIN), _alarm(13 * MIN, subject={"model_id": "x"})],
                   [_attack("a1"), _attack("a2", subject={"model_id": "x"}), _attack("a3", subject={"model_id": "y"})],
                   {})
    assert median_delay_with_misses(result.detections) == 180.0


def test_start_positions_point_at_the_first_event_at_or_after_the_start() -> None:
    assert start_positions([0, 5, 10, 10, 20], [_attack("a1", start=10), _attack("a2", start=21)]) == {"a1": 2,
                                                                                                       "a2": 5}


def test_peer_alarms_fold_per_kind_and_subject_within_the_hour() -> None:
    alarms = [_alarm(0), _alarm(30 * MIN), _alarm(61 * MIN), _alarm(10 * MIN, subject={"model_id": "fraud"})]
    assert [(a.ts, a.subject["model_id"]) for a in fold(alarms)] == [(0, "credit"), (10 * MIN, "fraud"),
                                                                      (61 * MIN, "credit")]


def test_incident_records_become_alarms_with_their_subject() -> None:
    record = {"kind": "segment_degradation", "detected_at": 5, "model_id": "fraud", "model_version": "v3",
              "segment": {"region": "APAC"}, "principal": None, "resource": None, "dataset": None}
    alarm = alarm_from_incident("segment_degradation", record, 9)
    assert alarm.subject == {"model_id": "fraud", "model_version": "v3", "segment": {"region": "APAC"}}
    assert (alarm.ts, alarm.position) == (5, 9)


def test_signals_join_feedback_to_predictions_and_count_per_minute() -> None:
    def prediction(event_id: str, ts: int, prediction: str | None, label: str | None) -> dict:
        features = {"amount": 1.0} if prediction else {}
        return {"type": "prediction", "event": {"event_id": event_id, "ts": ts, "model_id": "m", "model_version": "v",
                                                "segment": {"region": "EU"}, "features": features,
                                                "prediction": prediction, "score": 0.7 if prediction else None,
                                                "label": label}}
    download = {"type": "access", "event": {"ts": 61_000, "principal": "u", "action": "download", "count": 1}}
    records = [prediction("e1", 1_000, "positive", None), prediction("e2", 2_000, "negative", None), download,
               prediction("e1", 90_000, None, "negative"), prediction("e2", 95_000, None, "negative")]
    signals = {s.key: s for s in extract_signals(records, end_ms=180_000)}
    assert signals["error/m:v"].values == [1.0, 0.0] and signals["error/m:v"].positions == [3, 4]
    assert signals["segment_error/m:v/region=EU"].subject["segment"] == {"region": "EU"}
    assert signals["score/m:v"].values == [0.7, 0.7] and signals["score/m:v"].positions == [0, 1]
    assert signals["download_burst/u"].values == [1.0, 0.0] and signals["download_burst/u"].ts == [120_000, 180_000]


def test_scenarios_are_seeded_and_attacks_sit_inside_their_stream() -> None:
    from bench.detection.scenarios import build_scenario, download_burst, score_drift
    from bench.detection.traffic import TrafficConfig

    def build():  # type: ignore[no-untyped-def]
        injections = [score_drift("s", "credit", 0.5, 2.0), download_burst("d", "thief", 0.75, 30, 1)]
        return build_scenario("t", "", TrafficConfig(3, 3600), injections)

    first, second = build(), build()
    assert first.records == second.records
    timestamps = [record["event"]["ts"] for record in first.records]
    assert timestamps == sorted(timestamps) and first.start_ms <= timestamps[0] and timestamps[-1] < first.end_ms
    thief = [r for r in first.records if r["type"] == "access" and r["event"]["principal"] == "thief"]
    assert len(thief) == 30 and all(r["event"]["ts"] >= first.attacks[1].start_ts for r in thief)


def test_late_same_family_alarms_in_the_aftermath_are_not_false() -> None:
    attack = _attack(aftermath_ms=60 * MIN)  # window ends at 40 min, aftermath until 70 min
    result = match([_alarm(50 * MIN, kind="concept_drift"), _alarm(75 * MIN)], [attack], {})
    assert not result.detections[0].caught and result.collateral == 1
    assert [alarm.ts for alarm in result.false_alarms] == [75 * MIN]
