"""``Pipeline.process_runs``, the worker's path: runs of one partition's records, as they come from
getmany (record objects) or from ``streams.fetch`` (a ``FetchedRun``: offsets and values); every test
runs with both.

It must give what ``process_batch`` gives for the same messages one by one: the same events
analysed, the same dead letters in message order, the same counts, and state rebuilt (not
reported again) below a partition's replay mark.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from detectors._testing import data_change_stream, prediction_traffic
from detectors.engine import DetectorSet
from streams.codec import encode_event
from streams.fetched_run import FetchedRun
from streams.pipeline import Pipeline, RawMessage
from streams.settings import Settings

pytestmark = pytest.mark.unit

NOW = 1_800_000_000_000
HOUR = 3_600_000
SETTINGS = Settings.load({}, max_event_future_s=3600, allowed_lateness_s=86_400, max_events_per_key_per_batch=5)
TOPIC = SETTINGS.topic_access


@dataclass(frozen=True)
class ConsumerRecord:
    """The two fields of aiokafka's ``ConsumerRecord`` that the pipeline reads."""

    offset: int
    value: bytes | None


@pytest.fixture(params=["records", "fetched run"])
def as_run(request):
    """Turns a list of records into what the worker would hand over: the list itself or a FetchedRun."""
    if request.param == "records":
        return list
    return lambda records: FetchedRun([record.offset for record in records], [record.value for record in records])


def _download(n: int, ts: int, principal: str) -> bytes:
    return json.dumps({"event_id": f"e{n}", "ts": ts, "principal": principal, "action": "download",
                       "resource_type": "model", "resource": "fraud", "bytes": 400_000_000}).encode()


def _values() -> list[bytes | None]:
    """A thief's burst with an undecodable message, a forged timestamp, a tombstone and a flood in it."""
    values: list[bytes | None] = []
    for n in range(60):
        if n == 7:
            values.append(b"\x00not avro")
        elif n == 11:
            values.append(_download(n, NOW + 5 * HOUR, "mallory"))  # beyond the future bound
        elif n == 13:
            values.append(None)
        else:
            values.append(_download(n, NOW - 3_600_000 + n * 1000, "mallory" if n % 2 else f"user-{n % 9}"))
    return values


def _outcome(result) -> tuple:
    return (result.events, result.replayed, result.shed, [(d.offset, d.error_kind, d.reason) for d in result.dead_letters],
            [(i.kind, i.principal, i.affected_predictions) for i in result.incidents],
            [(c.action, c.target) for c in result.commands])


def test_runs_of_records_give_what_messages_one_by_one_give(as_run) -> None:
    values = _values()
    by_message = Pipeline.from_settings(SETTINGS)
    expected = by_message.process_batch([RawMessage(TOPIC, 0, n, v or b"", NOW) for n, v in enumerate(values)])
    by_run = Pipeline.from_settings(SETTINGS)
    records = [ConsumerRecord(n, v) for n, v in enumerate(values)]
    got = by_run.process_runs([(TOPIC, 0, NOW, as_run(records[:20])), (TOPIC, 0, NOW, as_run(records[20:]))])
    assert _outcome(got) == _outcome(expected)
    assert [d.offset for d in got.dead_letters][:3] == [7, 11, 13]  # in message order; the cap's letter last
    assert [d.error_kind for d in got.dead_letters] == ["malformed", "validation", "malformed", "validation"]
    assert got.events == 60 - 3 - got.shed and got.shed > 0
    assert by_run.guard.watermarks == by_message.guard.watermarks


def _poisoned_changes() -> tuple[list[ConsumerRecord], int]:
    """A dataset's changes with a poisoned one at index 8 (label shift, unapproved), and when they were received."""
    events = data_change_stream(seed=11, n=20, poison_at=8)
    return [ConsumerRecord(n, encode_event(event)) for n, event in enumerate(events)], events[-1].ts + 1000


def test_below_the_replay_mark_a_run_rebuilds_state_without_reporting_it_again(as_run) -> None:
    records, received_at = _poisoned_changes()
    run = [(SETTINGS.topic_data_changes, 0, received_at, as_run(records))]
    everything = Pipeline.from_settings(SETTINGS).process_runs(run)
    assert {incident.kind for incident in everything.incidents} == {"label_shift", "unapproved_change"}

    restored = Pipeline.from_settings(SETTINGS)
    restored.install((SETTINGS.topic_data_changes, 0), DetectorSet(), watermark=None, replay_until=len(records))
    again = restored.process_runs(run)
    assert (again.events, again.replayed, again.incidents) == (0, len(records), [])
    shard = restored.shards[(SETTINGS.topic_data_changes, 0)]
    assert sum(getattr(detector, "n_tracked_keys", 0) for detector in shard.detectors) > 0, "state was rebuilt"

    split = Pipeline.from_settings(SETTINGS)
    split.install((SETTINGS.topic_data_changes, 0), DetectorSet(), watermark=None, replay_until=5)
    halves = split.process_runs(run)
    assert (halves.replayed, halves.events) == (5, len(records) - 5)
    assert [i.kind for i in halves.incidents] == [i.kind for i in everything.incidents]  # found after the mark


def test_dead_letters_below_the_replay_mark_were_written_by_the_first_run(as_run) -> None:
    values = _values()
    restored = Pipeline.from_settings(SETTINGS)
    restored.install((TOPIC, 0), DetectorSet(), watermark=None, replay_until=12)
    result = restored.process_runs([(TOPIC, 0, NOW, as_run([ConsumerRecord(n, v) for n, v in enumerate(values)]))])
    assert [d.offset for d in result.dead_letters][0] == 13  # 7 and 11 lie below the mark
    assert result.replayed == 12 - 2 and result.events + result.shed == 60 - 12 - 1


def test_a_fetched_run_of_predictions_reads_as_its_records_do() -> None:
    """Avro predictions through the compiled reader: values it declines (garbage, a tombstone, a truncated
    body) take the full decode by position, and a replay mark inside the run splits it by offset."""
    events = prediction_traffic(seed=5, n=400)
    values: list[bytes | None] = [encode_event(event) for event in events]
    values[3], values[50], values[51] = b"\x00not avro", None, values[51][:-4]  # type: ignore[index]
    offsets = [1_000 + 2 * n for n in range(len(values))]  # a compacted log: gaps between offsets
    received_at = max(event.ts for event in events) + 1_000
    outcomes = []
    for run in ([ConsumerRecord(offset, value) for offset, value in zip(offsets, values)],
                FetchedRun(offsets, values)):
        pipeline = Pipeline.from_settings(SETTINGS)
        pipeline.install((SETTINGS.topic_predictions, 1), DetectorSet(), watermark=None, replay_until=offsets[40] + 1)
        result = pipeline.process_runs([(SETTINGS.topic_predictions, 1, received_at, run)])
        outcomes.append((_outcome(result), [(d.offset, d.raw) for d in result.dead_letters]))
    assert outcomes[0] == outcomes[1]
    (counts, letters) = outcomes[1]
    assert counts[1] == 41 - 1, "below the mark: rebuilt, the garbage at 3 not reported again"
    assert [offset for offset, _ in letters] == [offsets[50], offsets[51]] and letters[0][1] == b""
