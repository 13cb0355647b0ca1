"""Publishes a batch's outputs (incidents, containment commands, dead letters) as Avro.

With ``settings.command_signing_key`` set, every containment command carries the Kafka
header ``mlsentry-signature`` (see ``streams.signing``); the Avro value is unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Awaitable, Protocol

from streams.codec import DeadLetter, encode_command, encode_dead_letter, encode_incident
from streams.pipeline import BatchResult
from streams.settings import Settings
from streams.signing import SIGNATURE_HEADER, sign_command

Headers = list[tuple[str, bytes]]


#: Kafka's default message limit is 1 MiB; a dead letter keeps at most this much of the raw bytes.
MAX_DEAD_LETTER_RAW_BYTES = 512 * 1024


def fit_for_kafka(dead_letter: DeadLetter, max_raw_bytes: int) -> DeadLetter:
    """Truncate an oversized message's raw bytes so its dead letter can still be published."""
    if len(dead_letter.raw) <= max_raw_bytes:
        return dead_letter
    note = f" (raw truncated to the first {max_raw_bytes} of {len(dead_letter.raw)} bytes)"
    return dataclasses.replace(dead_letter, raw=dead_letter.raw[:max_raw_bytes], reason=dead_letter.reason + note)


class RecordProducer(Protocol):
    """The one producer call we need (aiokafka's producer fits behind it; tests pass doubles)."""

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Headers | None = None) -> Awaitable[object]: ...


class BatchPublisher:
    """Sends every output of a batch and waits until the broker acknowledged all of them."""

    def __init__(self, producer: RecordProducer, settings: Settings) -> None:
        self.producer = producer
        self.settings = settings

    async def publish(self, result: BatchResult) -> int:
        pending: list[Awaitable[object]] = []
        for incident in result.incidents:
            key = incident.incident_id.encode()
            pending.append(await self.producer.send(self.settings.topic_incidents, key, encode_incident(incident)))
        for command in result.commands:
            key = command.target.encode()  # all commands for one target stay in order on one partition
            pending.append(await self.producer.send(self.settings.topic_containment, key, encode_command(command),
                                                    self.command_headers(command)))
        for dead_letter in result.dead_letters:
            value = encode_dead_letter(fit_for_kafka(dead_letter, MAX_DEAD_LETTER_RAW_BYTES))
            pending.append(await self.producer.send(self.settings.topic_dead_letter, None, value))
        if pending:
            await asyncio.gather(*pending)
        return len(pending)

    def command_headers(self, command: object) -> Headers | None:
        key = self.settings.command_signing_key
        if not key:
            return None
        return [(SIGNATURE_HEADER, sign_command(command.to_record(), key).encode())]  # type: ignore[attr-defined]


class AIOKafkaRecordProducer:
    """Adapts a started ``aiokafka.AIOKafkaProducer`` to ``RecordProducer``."""

    def __init__(self, producer: object) -> None:
        self.producer = producer

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Headers | None = None) -> Awaitable[object]:
        return await self.producer.send(topic, value=value, key=key, headers=headers)  # type: ignore[attr-defined]
