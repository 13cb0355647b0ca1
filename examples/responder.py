"""A small downstream responder: applies mlsentry containment commands to in-memory controls.

The responder contract (what any real responder should do with ``mlsentry.containment``):

* Decode each message with the Avro schema ``schemas/containment_command.avsc``
  (``streams.codec.decode_command``). Messages are keyed by target, so all commands for
  one target arrive in order on one partition.
* ``mode == "dry_run"``: do not apply; acknowledge with outcome ``skipped_dry_run``.
* ``mode == "enforce"``: apply unless ``expires_at`` has passed (``skipped_expired``);
  lift it on your own when ``expires_at`` passes even if no revert ever arrives.
* ``action == "revert"``: undo the command named by ``revert_of`` (``reverted``; an unknown
  or already-lifted command is ``nothing_to_revert``).
* Commands are idempotent by ``command_id``: a duplicate (replay, restart) is acknowledged as
  ``duplicate`` and changes nothing.
* Acknowledge every command (JSON on ``mlsentry.containment_acks`` here) with its id, outcome
  and time, and commit the consumer offset only after the ack is sent.

Run it: ``python examples/responder.py --bootstrap-servers localhost:9092``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from streams.codec import decode_command

ACK_TOPIC = "mlsentry.containment_acks"  # Settings.topic_containment_acks; the worker tracks acks there


@dataclass
class Controls:
    """The things a responder can change: rate limits, model routing, dataset and retraining locks."""

    throttled: dict[str, int] = field(default_factory=dict)       # principal -> until (ms)
    reauth_required: dict[str, int] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)           # model_id -> pinned version (rollback)
    held_models: dict[str, int] = field(default_factory=dict)      # model -> until
    frozen_datasets: dict[str, int] = field(default_factory=dict)
    paused_retraining: dict[str, int] = field(default_factory=dict)

    def table_for(self, action: str) -> dict[str, Any] | None:
        return {"throttle": self.throttled, "force_reauth": self.reauth_required, "rollback_model": self.routes,
                "hold_for_review": self.held_models, "freeze_dataset": self.frozen_datasets,
                "pause_retraining": self.paused_retraining}.get(action)


class Responder:
    """Applies decoded commands to :class:`Controls`; pure apart from the clock it is given."""

    def __init__(self, clock: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.clock = clock
        self.controls = Controls()
        self.applied: dict[str, dict[str, Any]] = {}  # command_id -> command, while in force
        self.seen: set[str] = set()

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        self.expire(now)
        outcome = self._outcome(command, now)
        self.seen.add(command["command_id"])
        return {"command_id": command["command_id"], "action": command["action"], "target": command["target"],
                "mode": command["mode"], "outcome": outcome, "acked_at": now}

    def _outcome(self, command: dict[str, Any], now: int) -> str:
        if command["command_id"] in self.seen:
            return "duplicate"
        if command["mode"] != "enforce":
            return "skipped_dry_run"
        if command["action"] == "revert":
            return "reverted" if self._lift(command.get("revert_of") or "") else "nothing_to_revert"
        if command["expires_at"] <= now:
            return "skipped_expired"
        table = self.controls.table_for(command["action"])
        if table is None:
            return "unsupported_action"
        key = command["target"]
        table[key] = command["params"].get("target_version", "") if command["action"] == "rollback_model" \
            else command["expires_at"]
        self.applied[command["command_id"]] = command
        return "applied"

    def expire(self, now: int) -> list[str]:
        """Lift every applied command whose ``expires_at`` has passed; returns their ids."""
        expired = [cid for cid, command in self.applied.items() if command["expires_at"] <= now]
        for command_id in expired:
            self._lift(command_id)
        return expired

    def _lift(self, command_id: str) -> bool:
        command = self.applied.pop(command_id, None)
        if command is None:
            return False
        table = self.controls.table_for(command["action"])
        if table is not None:
            table.pop(command["target"], None)
        return True


def authentic(record: Any, command: dict[str, Any], signing_key: str | None) -> bool:
    """With a key, only commands whose ``mlsentry-signature`` header verifies are genuine."""
    if not signing_key:
        return True
    from streams.signing import signature_header, verify_command

    return verify_command(command, signature_header(record.headers), signing_key)


def forged_ack(command: dict[str, Any], now: int) -> dict[str, Any]:
    return {"command_id": command.get("command_id", ""), "action": command.get("action", ""),
            "target": command.get("target", ""), "mode": command.get("mode", ""),
            "outcome": "rejected_bad_signature", "acked_at": now}


async def run(bootstrap: str, topic: str, ack_topic: str, group_id: str, responder: Responder,
              stop: asyncio.Event, on_ack: Callable[[dict[str, Any]], None] | None = None,
              signing_key: str | None = None) -> None:
    """Consume ``topic`` until ``stop`` is set; ack each command, then commit its offset.

    With ``signing_key`` (the worker's ``MLSENTRY_COMMAND_SIGNING_KEY``), a command whose HMAC
    signature header is missing or wrong is never applied: it is acknowledged as
    ``rejected_bad_signature`` so the forgery is visible.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    command = decode_command(record.value)
                    if authentic(record, command, signing_key):
                        ack = responder.handle(command)
                    else:
                        ack = forged_ack(command, responder.clock())
                    await producer.send_and_wait(ack_topic, json.dumps(ack).encode(), key=record.key)
                    if on_ack is not None:
                        on_ack(ack)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap-servers", default="localhost:9092")
    parser.add_argument("--topic", default="mlsentry.containment")
    parser.add_argument("--ack-topic", default=ACK_TOPIC)
    parser.add_argument("--group-id", default="mlsentry-responder")
    args = parser.parse_args()
    responder = Responder()
    signing_key = os.environ.get("MLSENTRY_COMMAND_SIGNING_KEY") or None  # same key as the worker's
    asyncio.run(run(args.bootstrap_servers, args.topic, args.ack_topic, args.group_id, responder, asyncio.Event(),
                    on_ack=lambda ack: print(json.dumps(ack), flush=True), signing_key=signing_key))


if __name__ == "__main__":
    main()
