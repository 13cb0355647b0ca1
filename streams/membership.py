"""A restarted worker ends its crashed previous run's group membership before joining.

A worker killed without a clean stop (SIGKILL, OOM, power loss) stays a member of its consumer
group until its session times out, and the group cannot hand out its partitions before then:
its replacement waited about 1.8 session timeouts on the embedded broker (18 s at the default
10 s), since a join is held while the dead member is still listed. So the worker records its
member id in its data directory after every assignment, and the next run, before it joins,
sends LeaveGroup for that id: the dead member is gone at once. A record of a member that has
left or expired meanwhile is answered "unknown member id" and changes nothing.

A worker's data directory is its identity here, as it already is for its spill and its embedded
ClickHouse: two workers must not share one. Static members (``MLSENTRY_GROUP_INSTANCE_ID``) take
their old place back by themselves, so the record serves dynamic membership only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.errors import for_code
from aiokafka.protocol.group import LeaveGroupRequest

log = logging.getLogger("mlsentry.membership")

RECORD_NAME = "kafka-group-member.json"


@dataclass(frozen=True)
class MemberRecord:
    """The member id a worker had in a group, as of its last assignment."""

    group_id: str
    member_id: str


def record_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / RECORD_NAME


def read_record(path: Path) -> MemberRecord | None:
    """The recorded member, or ``None`` when there is none (or the file is not one of ours)."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        return MemberRecord(str(values["group_id"]), str(values["member_id"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def write_record(path: Path, record: MemberRecord) -> None:
    """Replace the record atomically: a crash mid-write leaves the old one or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(record)), encoding="utf-8")
    os.replace(partial, path)


def clear_record(path: Path) -> None:
    path.unlink(missing_ok=True)


def member_id_of(consumer: AIOKafkaConsumer) -> str | None:
    """The consumer's current member id (aiokafka keeps it on its group coordinator, unexported)."""
    member_id = getattr(getattr(consumer, "_coordinator", None), "member_id", None)
    return member_id if isinstance(member_id, str) and member_id else None


async def leave_for_previous_run(path: Path, group_id: str, bootstrap_servers: str, kafka_kwargs: dict[str, Any],
                                 timeout_s: float = 10.0) -> str | None:
    """Send LeaveGroup for the member recorded at ``path`` if it was in ``group_id``; the broker's answer.

    Returns the answer's error name (``NoError``: the dead member is gone) or ``None`` when there
    was nothing to do. Never raises for Kafka trouble: a failed leave only means a slower join.
    """
    record = read_record(path)
    if record is None or record.group_id != group_id:
        return None
    try:
        client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, client_id="mlsentry-worker-rejoin",
                                **kafka_kwargs)
        try:
            answer = await asyncio.wait_for(_leave(client, record), timeout_s)
        finally:
            await client.close()
        clear_record(path)
    except Exception as exc:  # noqa: BLE001  # KafkaError, OSError, a timeout, aiokafka's asserts: join anyway
        log.warning("could not end the previous run's membership %s of %s (%r); joining anyway",
                    record.member_id, group_id, exc)
        return type(exc).__name__
    log.info("ended the previous run's membership %s of %s: %s", record.member_id, group_id, answer)
    return answer


async def _leave(client: AIOKafkaClient, record: MemberRecord) -> str:
    await client.bootstrap()
    coordinator = await client.coordinator_lookup(CoordinationType.GROUP, record.group_id)
    response = await client.send(coordinator, LeaveGroupRequest(record.group_id, record.member_id))
    return for_code(response.error_code).__name__
