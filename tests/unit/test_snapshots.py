"""Snapshots: authenticated before parsed, restricted when unpickled, torn writes survive."""

from __future__ import annotations

import os
import pickle

import pytest

from detectors.engine import DetectorSet
from streams.codec import event_from_record
from streams.simulator import SimulationConfig, simulate
from streams.snapshots import (SnapshotError, SnapshotHeader, assemble, decode_snapshot, encode_snapshot, fingerprint,
                               manifest, restricted_loads, split_chunks)

pytestmark = pytest.mark.unit
KEY = "snapshot-key"


def _events(seed: int, **config):
    settings = {"seed": seed, "duration_s": 1800, **config}
    return [event_from_record(r["type"], r["event"]) for r in simulate(SimulationConfig(**settings)).records]


def _learned() -> DetectorSet:
    detector_set = DetectorSet()
    for event in _events(3):
        detector_set.update(event)
    return detector_set


def _header(detector_set: DetectorSet, **changes) -> SnapshotHeader:
    values = dict(group="g", topic="t", partition=1, offset=42, watermark=7, fingerprint=fingerprint(("x",), detector_set),
                  events=42, created_at_ms=0)
    values.update(changes)
    return SnapshotHeader(**values)


def _decode(envelope: bytes, detector_set: DetectorSet, key: str = KEY, partition: int = 1):
    return decode_snapshot(envelope, key, group="g", topic="t", partition=partition,
                           expected_fingerprint=fingerprint(("x",), detector_set))


def test_a_learned_detector_set_round_trips_through_the_restricted_unpickler():
    """Also the contract for detector authors: new state types must be on the allow-list."""
    detector_set = _learned()
    header, restored = _decode(encode_snapshot(_header(detector_set), detector_set, KEY), detector_set)
    assert header.offset == 42 and header.watermark == 7
    # Same behaviour from here on (pickle bytes may differ: a set rebuilt by unpickling can iterate
    # in another order than the original, which had deletions).
    later = _events(4, start_ms=SimulationConfig().start_ms + 1_800_000, duration_s=3 * 3600)  # with attacks
    findings = [restored.update(e) for e in later]
    assert findings == [detector_set.update(e) for e in later]
    assert sum(map(len, findings)) >= 3, "the comparison covers real findings, not only silence"
    assert [type(d) for d in restored.detectors] == [type(d) for d in detector_set.detectors]


@pytest.mark.parametrize("position", [0, 10, 200, -40, -1])
def test_any_flipped_byte_is_refused_before_unpickling(position):
    detector_set = DetectorSet()
    envelope = bytearray(encode_snapshot(_header(detector_set), detector_set, KEY))
    envelope[position] ^= 0x01
    with pytest.raises(SnapshotError):
        _decode(bytes(envelope), detector_set)


def test_wrong_key_foreign_partition_and_other_configuration_are_refused():
    detector_set = DetectorSet()
    envelope = encode_snapshot(_header(detector_set), detector_set, KEY)
    with pytest.raises(SnapshotError, match="HMAC"):
        _decode(envelope, detector_set, key="other-key")
    with pytest.raises(SnapshotError, match="belongs to"):
        _decode(envelope, detector_set, partition=2)
    other = encode_snapshot(_header(detector_set, fingerprint="0" * 32), detector_set, KEY)
    with pytest.raises(SnapshotError, match="configuration"):
        _decode(other, detector_set)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_validly_signed_malicious_pickle_is_still_refused():
    """Defence in depth: even a leaked key cannot make the worker run os.system."""
    with pytest.raises(SnapshotError, match="allow-list"):
        restricted_loads(pickle.dumps(_Exploit()))
    smuggled = pickle.dumps(DetectorSet()).replace(b"DetectorSet", b"os\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    with pytest.raises(SnapshotError):
        restricted_loads(smuggled)


def test_a_name_re_exported_by_an_allowed_module_is_refused():
    payload = b"\x80\x05\x8c\x10detectors.engine\x94\x8c\x0fbuild_detectors\x94\x93\x94."
    with pytest.raises(SnapshotError, match="not a class"):
        restricted_loads(payload)


def test_a_payload_that_is_not_a_detector_set_is_refused():
    header = _header(DetectorSet())
    envelope = encode_snapshot(header, {"not": "a detector set"}, KEY)  # type: ignore[arg-type]
    with pytest.raises(SnapshotError, match="not a DetectorSet"):
        _decode(envelope, DetectorSet())


def test_chunks_reassemble_and_a_torn_write_leaves_the_previous_snapshot_readable():
    old, new = os.urandom(2_000_000), os.urandom(1_500_000)
    latest = {}
    for index, chunk in enumerate(split_chunks(old, generation=1)):
        latest[f"b/s0/{index}"] = chunk
    latest["b"] = manifest(old, 1, 0, index + 1)
    assert assemble("b", latest) == old
    for index, chunk in enumerate(split_chunks(new, generation=2)[:2]):  # killed before the manifest
        latest[f"b/s1/{index}"] = chunk
    assert assemble("b", latest) == old
    latest["b/s0/1"] = latest["b/s1/1"]  # a chunk overwritten under the named slot
    with pytest.raises(SnapshotError):
        assemble("b", latest)
