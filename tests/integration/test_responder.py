"""examples/responder.py against the embedded broker: applies, honours expiry and revert, acknowledges."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from detectors.containment import ContainmentPolicy
from detectors.findings import ContainmentCommand
from examples.responder import Responder, run
from streams.codec import encode_command
from streams.publishing import start_producer
from streams.topics import ensure_topics, read_all
from tests.conftest import isolated_settings

pytestmark = pytest.mark.integration

NOW = 1_800_000_000_000


def command(command_id: str, action: str, target: str, mode: str = "enforce", expires_at: int = NOW + 60_000,
            **params: str) -> ContainmentCommand:
    return ContainmentCommand(command_id, "inc-1", NOW, action, "principal", target, mode, expires_at,
                              f"{action} {target}", params=params)


async def _exercise(bootstrap: str, settings) -> tuple[Responder, list[dict]]:
    await ensure_topics(settings, bootstrap)
    throttle = command("c1", "throttle", "mallory")
    rollback = command("c2", "rollback_model", "fraud", target_version="v2", target_hash="sha256:good")
    # the revert keeps the original's mode, so an enforced rollback gets an enforced revert
    commands = [throttle, throttle, rollback, command("c3", "throttle", "eve", mode="dry_run"),
                command("c4", "force_reauth", "bob", expires_at=NOW - 1),
                ContainmentPolicy().revert_for(rollback, NOW + 1, "incident resolved")]
    producer = await start_producer(bootstrap)
    try:
        for item in commands:
            await producer.send_and_wait(settings.topic_containment, encode_command(item), key=item.target.encode())
    finally:
        await producer.stop()
    responder, acks, stop = Responder(clock=lambda: NOW), [], asyncio.Event()

    def on_ack(ack: dict) -> None:
        acks.append(ack)
        if len(acks) == len(commands):
            stop.set()

    ack_topic = settings.topic_dead_letter  # a fresh per-test topic stands in for mlsentry.containment_acks
    task = asyncio.create_task(run(bootstrap, settings.topic_containment, ack_topic,
                                   settings.group_id + "-responder", responder, stop, on_ack))
    await asyncio.wait_for(stop.wait(), 60)
    await task
    return responder, acks


def test_responder_applies_honours_expiry_and_revert_and_acknowledges(embedded_broker, tmp_path: Path):
    bootstrap = embedded_broker.bootstrap_servers
    settings = isolated_settings(tmp_path, bootstrap, topic_partitions=1)
    responder, acks = asyncio.run(_exercise(bootstrap, settings))
    assert [(a["command_id"], a["outcome"]) for a in acks][:5] == [
        ("c1", "applied"), ("c1", "duplicate"), ("c2", "applied"), ("c3", "skipped_dry_run"),
        ("c4", "skipped_expired")]
    assert acks[5]["outcome"] == "reverted"
    assert responder.controls.throttled == {"mallory": NOW + 60_000}
    assert responder.controls.routes == {} and "bob" not in responder.controls.reauth_required
    assert responder.expire(NOW + 60_000) == ["c1"] and responder.controls.throttled == {}
    published_acks = [json.loads(raw) for raw in asyncio.run(read_all(bootstrap, settings.topic_dead_letter))]
    assert [a["outcome"] for a in published_acks] == [a["outcome"] for a in acks]


def test_a_rollback_pins_the_named_known_good_version():
    responder = Responder(clock=lambda: NOW)
    ack = responder.handle(command("c9", "rollback_model", "fraud", target_version="v2").to_record())
    assert ack["outcome"] == "applied" and responder.controls.routes == {"fraud": "v2"}


async def _signed_and_forged(bootstrap: str, settings, key: str) -> list[dict]:
    from streams.signing import SIGNATURE_HEADER, sign_command

    await ensure_topics(settings, bootstrap)
    genuine, forged, unsigned = command("s1", "throttle", "mallory"), command("s2", "throttle", "alice"), \
        command("s3", "throttle", "carol")
    producer = await start_producer(bootstrap)
    try:
        for item, signature in ((genuine, sign_command(genuine.to_record(), key)),
                                (forged, sign_command(forged.to_record(), "attacker-key")), (unsigned, None)):
            headers = [(SIGNATURE_HEADER, signature.encode())] if signature else None
            await producer.send_and_wait(settings.topic_containment, encode_command(item), key=item.target.encode(),
                                         headers=headers)
    finally:
        await producer.stop()
    responder, acks, stop = Responder(clock=lambda: NOW), [], asyncio.Event()

    def on_ack(ack: dict) -> None:
        acks.append(ack)
        if len(acks) == 3:
            stop.set()

    task = asyncio.create_task(run(bootstrap, settings.topic_containment, settings.topic_dead_letter,
                                   settings.group_id + "-responder", responder, stop, on_ack, signing_key=key))
    await asyncio.wait_for(stop.wait(), 60)
    await task
    assert responder.controls.throttled == {"mallory": NOW + 60_000}, "only the genuine command is applied"
    return acks


def test_responder_with_a_key_rejects_forged_and_unsigned_commands(embedded_broker, tmp_path: Path):
    settings = isolated_settings(tmp_path, embedded_broker.bootstrap_servers, topic_partitions=1)
    acks = asyncio.run(_signed_and_forged(embedded_broker.bootstrap_servers, settings, "responder-test-key"))
    assert [(a["command_id"], a["outcome"]) for a in acks] == [
        ("s1", "applied"), ("s2", "rejected_bad_signature"), ("s3", "rejected_bad_signature")]
