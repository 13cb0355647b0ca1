"""Create mlsentry's topics when they are missing (existing topics are never altered)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.kafka_security import client_kwargs
from streams.settings import Settings


def all_topics(settings: Settings) -> list[str]:
    return [
        settings.topic_predictions,
        settings.topic_access,
        settings.topic_data_changes,
        settings.topic_incidents,
        settings.topic_containment,
        settings.topic_containment_acks,
        settings.topic_dead_letter,
    ]


async def ensure_topics(settings: Settings, bootstrap_servers: str) -> list[str]:
    """Create any missing mlsentry topic; return the names that were created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="mlsentry-admin",
                                **client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in all_topics(settings) if name not in existing]
        if missing:
            new_topics = [NewTopic(name, settings.topic_partitions, 1) for name in missing]
            try:
                await admin.create_topics(new_topics)
            except TopicAlreadyExistsError:
                pass  # another worker won the race; the topic is there, which is all we need
        return missing
    finally:
        await admin.close()


async def read_all(bootstrap_servers: str, topic: str, timeout_s: float = 10.0,
                   settings: Settings | None = None) -> list[bytes]:
    """Every message currently on ``topic`` (all partitions, from the beginning), no group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id="mlsentry-reader",
                                **(client_kwargs(settings) if settings is not None else {}))
    await consumer.start()
    try:
        partitions = sorted(await _partitions_of(consumer, topic))
        assigned = [TopicPartition(topic, p) for p in partitions]
        if not assigned:
            return []
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        end = await consumer.end_offsets(assigned)
        values: list[bytes] = []
        # The reported end can lag the log by one record batch (tansu 0.6 reports the last batch's
        # base offset), so read until the end is passed AND one more fetch comes back empty.
        behind = any(offset > 0 for offset in end.values())
        while True:
            # Behind the reported end: wait up to timeout_s for data. Past it: one short fetch to be sure.
            batch = await consumer.getmany(timeout_ms=int(timeout_s * 1000) if behind else 300)
            if not batch:
                return values
            for messages in batch.values():
                values.extend(message.value or b"" for message in messages)
            behind = bool([tp for tp in assigned if await consumer.position(tp) < end[tp]])
    finally:
        await consumer.stop()


async def _partitions_of(consumer: object, topic: str) -> set[int]:
    """Partition ids of ``topic``, fetching metadata for it if the client has none yet."""
    client = consumer._client  # type: ignore[attr-defined]
    client.add_topic(topic)
    await client.force_metadata_update()
    return set(client.cluster.partitions_for_topic(topic) or ())
