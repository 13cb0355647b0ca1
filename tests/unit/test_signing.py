"""Containment commands carry an HMAC that responders verify."""

from __future__ import annotations

import asyncio

import pytest

from detectors.findings import ContainmentCommand
from streams.codec import decode_command
from streams.pipeline import BatchResult
from streams.publisher import BatchPublisher
from streams.settings import Settings
from streams.signing import SIGNATURE_HEADER, canonical_command, sign_command, signature_header, verify_command

pytestmark = pytest.mark.unit

COMMAND = ContainmentCommand("c1", "i1", 1_000, "throttle", "principal", "mallory", "dry_run", 9_000, "burst",
                             {"rate": "1/s"})


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    async def send(self, topic, key, value, headers=None):
        self.sent.append((topic, key, value, headers))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def test_signature_verifies_and_any_field_change_breaks_it():
    record = COMMAND.to_record()
    signature = sign_command(record, "k")
    assert verify_command(record, signature, "k")
    for name, value in [("target", "alice"), ("mode", "enforce"), ("expires_at", 10**12), ("params", {})]:
        assert not verify_command({**record, name: value}, signature, "k"), name
    assert not verify_command(record, signature, "other-key")
    assert not verify_command(record, None, "k") and not verify_command(record, "v1=" + "0" * 64, "k")


def test_canonical_form_ignores_key_order():
    record = COMMAND.to_record()
    assert canonical_command(record) == canonical_command(dict(reversed(list(record.items()))))


async def test_published_commands_carry_a_header_a_responder_can_verify_from_the_avro_value():
    producer = _Recorder()
    settings = Settings.load({}, command_signing_key="k")
    await BatchPublisher(producer, settings).publish(BatchResult(commands=[COMMAND]))
    (topic, _, value, headers), = producer.sent
    assert topic == settings.topic_containment
    decoded = decode_command(value)  # what a responder has: the Avro value and the headers
    assert verify_command(decoded, signature_header(headers), "k")
    assert dict(headers)[SIGNATURE_HEADER].startswith(b"v1=")


async def test_without_a_key_commands_are_unsigned_and_enforce_mode_refuses_to_start():
    producer = _Recorder()
    await BatchPublisher(producer, Settings.load({})).publish(BatchResult(commands=[COMMAND]))
    assert producer.sent[0][3] is None
    with pytest.raises(ValueError, match="COMMAND_SIGNING_KEY"):
        Settings.load({}, containment_mode="enforce")


def test_secrets_come_from_files_and_are_masked(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n")
    settings = Settings.load({"MLSENTRY_COMMAND_SIGNING_KEY_FILE": str(key_file), "MLSENTRY_KAFKA_SASL_PASSWORD": "pw",
                              "MLSENTRY_SNAPSHOT_KEY": "snap"})
    assert settings.command_signing_key == "from-a-file"
    shown = str(settings.describe())
    assert "from-a-file" not in shown and "pw'" not in shown and "snap'" not in shown
    with pytest.raises(ValueError, match="not both"):
        Settings.load({"MLSENTRY_SNAPSHOT_KEY": "a", "MLSENTRY_SNAPSHOT_KEY_FILE": str(key_file)})
