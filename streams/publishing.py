"""Sending events to the input topics: used by `mlsentry publish`, the demo and the tests."""

from __future__ import annotations

import json
from typing import Any, Iterable

from aiokafka import AIOKafkaProducer

from detectors.events import Event, event_type_name
from streams.codec import encode_event, event_from_record
from streams.kafka_security import client_kwargs
from streams.settings import Settings

WIRE_FORMATS = ("json", "avro", "confluent")


def partition_key(event: Event) -> bytes:
    """Events of one subject share a partition, so one worker owns that subject's state.

    Predictions are keyed by ``model_id`` (not version) so a canary and its incumbent,
    and feedback and the prediction it labels, meet in the same partition. Kafka's
    default partitioner hashes key bytes with murmur2, stable across processes.
    """
    event_type = event_type_name(event)
    if event_type == "prediction":
        return event.model_id.encode()  # type: ignore[union-attr]
    if event_type == "access":
        return event.principal.encode()  # type: ignore[union-attr]
    return event.dataset.encode()  # type: ignore[union-attr]


def encode_for_wire(event: Event, record: dict[str, Any] | None, wire_format: str) -> bytes:
    """Bytes of ``event`` in one of the accepted wire formats."""
    if wire_format == "json":
        from streams.codec import event_to_record

        return json.dumps(record if record is not None else event_to_record(event), separators=(",", ":")).encode()
    if wire_format == "avro":
        return encode_event(event)
    if wire_format == "confluent":
        return encode_event(event, confluent_schema_id=1)
    raise ValueError(f"wire format must be one of {WIRE_FORMATS}, not {wire_format!r}")


async def start_producer(bootstrap_servers: str, settings: Settings | None = None) -> AIOKafkaProducer:
    """A started producer; ``settings`` (if given) supplies SASL/TLS like every worker client."""
    security = client_kwargs(settings) if settings is not None else {}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, client_id="mlsentry-publisher", linger_ms=5,
        max_batch_size=256 * 1024, acks="all", **security,
    )
    await producer.start()
    return producer


async def publish_records(producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[str, dict[str, Any]]],
                          wire_format: str = "json") -> int:
    """Publish ``(event_type, record)`` pairs to ``topic``; returns how many were sent."""
    futures = []
    for event_type, record in records:
        event = event_from_record(event_type, record)
        value = encode_for_wire(event, record, wire_format)
        futures.append(await producer.send(topic, value=value, key=partition_key(event)))
    for future in futures:
        await future
    return len(futures)
