"""Detector-state snapshots: our own authenticated, versioned envelope in a compacted topic.

Envelope (one per (group, topic, partition))::

    b"MLSNAP" | version (1 byte) | header length (4 bytes BE) | header JSON | payload | HMAC-SHA256 (32 bytes)

The HMAC (key ``settings.snapshot_key``) covers everything before it and is checked
before anything else is parsed. The header says which group/topic/partition the state
belongs to, the first input offset the state does *not* include (``offset``), the
partition's event-time watermark and a fingerprint of the detector configuration; a
snapshot for another partition, another detector set or another format version is
refused. Only then is the payload unpickled, by :class:`RestrictedUnpickler`, which
resolves nothing outside an explicit allow-list (our ``detectors`` package, River, a few
containers and numpy reconstructors) and additionally checks that the object it returns
was defined in an allowed module (so ``detectors.x.os`` cannot smuggle ``os.system``).
Every refusal raises :class:`SnapshotError`; the worker logs it and starts the partition
fresh (replaying it from its start), never trusting the bytes.

Storage: the compacted topic ``settings.topic_snapshots``. Kafka refuses messages over
~1 MiB, and a partition's detector state can be larger, so an envelope is cut into
chunks stored under ``<group>/<topic>/<partition>/s<slot>/<i>`` and published first; then
a small manifest under the key ``<group>/<topic>/<partition>`` names the slot, the
generation, the chunk count and the SHA-256 of the whole envelope. Writes alternate
between two slots, so a worker killed half-way through writing leaves the previous
snapshot (which the manifest still names) intact.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import pickle
import time
from dataclasses import asdict, dataclass
from typing import Any

from detectors.engine import DetectorSet

log = logging.getLogger("mlsentry.snapshots")

MAGIC = b"MLSNAP"
#: Bumped whenever a detector's pickled state changes shape, so old snapshots are refused
#: (and the partition rebuilt) rather than half-restored. 2: input_anomaly holds numpy trees, and
#: the label joins hold the prediction events themselves.
FORMAT_VERSION = 2
_MAC_BYTES = 32
_CHUNK_MAGIC = b"MLSCHK1"
CHUNK_BYTES = 512 * 1024

#: Modules whose classes a snapshot may contain (exact names, or prefixes ending in ".").
ALLOWED_MODULE_PREFIXES = ("detectors.", "river.")
ALLOWED_GLOBALS = frozenset({
    ("collections", "OrderedDict"), ("collections", "deque"), ("collections", "defaultdict"),
    ("collections", "Counter"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "dict"), ("builtins", "list"),
    ("builtins", "tuple"), ("builtins", "int"), ("builtins", "float"), ("builtins", "complex"),
    ("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "str"), ("builtins", "bool"),
    ("builtins", "slice"), ("builtins", "range"),
    ("copyreg", "_reconstructor"), ("builtins", "object"),
    # Resolves nothing by itself: the function inside a partial goes through find_class too.
    ("functools", "partial"), ("random", "Random"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})


class SnapshotError(ValueError):
    """A snapshot that must not be used (forged, corrupt, foreign or from another version)."""


@dataclass(frozen=True)
class SnapshotHeader:
    group: str
    topic: str
    partition: int
    #: The first offset of the partition that the saved state has NOT seen.
    offset: int
    watermark: int
    fingerprint: str
    events: int
    created_at_ms: int


def fingerprint(detector_names: tuple[str, ...] | list[str], detector_set: DetectorSet | None = None) -> str:
    """Identifies the detector configuration; a snapshot only restores into the same one."""
    classes = [f"{type(d).__module__}.{type(d).__qualname__}" for d in detector_set.detectors] if detector_set else []
    text = json.dumps({"format": FORMAT_VERSION, "detectors": list(detector_names), "classes": classes})
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _allowed_module(module: str) -> bool:
    return any(module.startswith(prefix) for prefix in ALLOWED_MODULE_PREFIXES)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; anything else is a :class:`SnapshotError`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if not _allowed_module(module) or name.startswith("__"):
            raise SnapshotError(f"snapshot refers to {module}.{name}, which is not on the allow-list")
        found = super().find_class(module, name)
        defined_in = getattr(found, "__module__", None) or ""
        if not isinstance(found, type) or not (_allowed_module(defined_in + ".") or _allowed_module(defined_in)):
            raise SnapshotError(f"snapshot refers to {module}.{name}, which is not a class of an allowed module")
        return found


def restricted_loads(data: bytes) -> Any:
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except SnapshotError:
        raise
    except Exception as exc:  # truncated or malformed pickle stream
        raise SnapshotError(f"snapshot payload does not unpickle: {type(exc).__name__}: {exc}") from None


def _key(key: str | bytes) -> bytes:
    if not key:
        raise SnapshotError("no snapshot key configured")
    return key.encode() if isinstance(key, str) else key


def encode_snapshot(header: SnapshotHeader, detector_set: DetectorSet, key: str | bytes) -> bytes:
    """The signed envelope holding ``detector_set``."""
    header_json = json.dumps(asdict(header), sort_keys=True).encode()
    payload = pickle.dumps(detector_set, protocol=5)
    body = MAGIC + bytes([FORMAT_VERSION]) + len(header_json).to_bytes(4, "big") + header_json + payload
    return body + hmac.new(_key(key), body, hashlib.sha256).digest()


def read_header(envelope: bytes, key: str | bytes) -> tuple[SnapshotHeader, bytes]:
    """Authenticate ``envelope``; its header and (still pickled) payload."""
    prefix = len(MAGIC) + 1 + 4
    if len(envelope) < prefix + _MAC_BYTES or not envelope.startswith(MAGIC):
        raise SnapshotError("not an mlsentry snapshot (bad magic or too short)")
    body, mac = envelope[:-_MAC_BYTES], envelope[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, hmac.new(_key(key), body, hashlib.sha256).digest()):
        raise SnapshotError("snapshot HMAC does not verify (wrong key, corrupt or forged)")
    if body[len(MAGIC)] != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format version {body[len(MAGIC)]} is not {FORMAT_VERSION}")
    header_len = int.from_bytes(body[len(MAGIC) + 1:prefix], "big")
    try:
        header = SnapshotHeader(**json.loads(body[prefix:prefix + header_len]))
    except (ValueError, TypeError) as exc:
        raise SnapshotError(f"snapshot header is malformed: {exc}") from None
    return header, body[prefix + header_len:]


def decode_snapshot(envelope: bytes, key: str | bytes, *, group: str, topic: str, partition: int,
                    expected_fingerprint: str) -> tuple[SnapshotHeader, DetectorSet]:
    """Verify, check it belongs to (group, topic, partition, configuration), then restricted-unpickle."""
    header, payload = read_header(envelope, key)
    if (header.group, header.topic, header.partition) != (group, topic, partition):
        raise SnapshotError(f"snapshot belongs to {header.group}/{header.topic}/{header.partition}, "
                            f"not {group}/{topic}/{partition}")
    if header.fingerprint != expected_fingerprint:
        raise SnapshotError("snapshot was taken with a different detector configuration")
    detector_set = restricted_loads(payload)
    if not isinstance(detector_set, DetectorSet):
        raise SnapshotError(f"snapshot payload is a {type(detector_set).__name__}, not a DetectorSet")
    return header, detector_set


def snapshot_key(group: str, topic: str, partition: int) -> str:
    return f"{group}/{topic}/{partition}"


# ---- chunking over a compacted topic ---------------------------------------------------------


def split_chunks(envelope: bytes, generation: int, chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    pieces = [envelope[i:i + chunk_bytes] for i in range(0, len(envelope), chunk_bytes)] or [b""]
    return [_CHUNK_MAGIC + generation.to_bytes(8, "big") + index.to_bytes(4, "big") + piece
            for index, piece in enumerate(pieces)]


def manifest(envelope: bytes, generation: int, slot: int, chunks: int) -> bytes:
    return json.dumps({"v": 1, "generation": generation, "slot": slot, "chunks": chunks,
                       "sha256": hashlib.sha256(envelope).hexdigest()}).encode()


def assemble(base: str, latest: dict[str, bytes]) -> bytes:
    """The envelope named by the manifest under ``base`` in ``latest`` (key -> newest value)."""
    try:
        info = json.loads(latest[base])
        slot, generation, count = int(info["slot"]), int(info["generation"]), int(info["chunks"])
    except (KeyError, ValueError, TypeError) as exc:
        raise SnapshotError(f"no usable manifest for {base}: {exc!r}") from None
    parts = []
    for index in range(count):
        chunk = latest.get(f"{base}/s{slot}/{index}", b"")
        head = _CHUNK_MAGIC + generation.to_bytes(8, "big") + index.to_bytes(4, "big")
        if not chunk.startswith(head):
            raise SnapshotError(f"chunk {index} of {base} generation {generation} is missing or overwritten")
        parts.append(chunk[len(head):])
    envelope = b"".join(parts)
    if hashlib.sha256(envelope).hexdigest() != info.get("sha256"):
        raise SnapshotError(f"snapshot chunks of {base} do not match their manifest")
    return envelope


class KafkaSnapshotStore:
    """Reads and writes envelopes in the compacted snapshot topic (with the worker's security settings)."""

    def __init__(self, topic: str, bootstrap_servers: str, producer: Any, client_kwargs: dict[str, Any]) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.producer = producer
        self.client_kwargs = client_kwargs
        self._slots: dict[str, int] = {}

    async def ensure_topic(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id="mlsentry-snapshots",
                                    **self.client_kwargs)
        await admin.start()
        try:
            if self.topic not in set(await admin.list_topics()):
                topic = NewTopic(self.topic, 1, 1, topic_configs={"cleanup.policy": "compact"})
                try:
                    await admin.create_topics([topic])
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()

    async def save(self, base: str, envelope: bytes) -> None:
        """Publish chunks into the slot the current manifest does not name, then the manifest."""
        slot = 1 - self._slots.get(base, 1)
        generation = time.time_ns()
        chunks = split_chunks(envelope, generation)
        futures = [await self.producer.send(self.topic, key=f"{base}/s{slot}/{i}".encode(), value=chunk)
                   for i, chunk in enumerate(chunks)]
        for future in futures:
            await future
        await (await self.producer.send(self.topic, key=base.encode(),
                                        value=manifest(envelope, generation, slot, len(chunks))))
        self._slots[base] = slot

    async def load(self, bases: list[str]) -> dict[str, bytes]:
        """Envelope bytes for each of ``bases`` that has a complete snapshot (unverified: callers decode)."""
        latest = await self._read_latest()
        found: dict[str, bytes] = {}
        for base in bases:
            if base not in latest:
                continue
            try:
                found[base] = assemble(base, latest)
                self._slots[base] = int(json.loads(latest[base])["slot"])
            except SnapshotError as exc:
                log.warning("ignoring snapshot %s: %s", base, exc)
        return found

    async def _read_latest(self) -> dict[str, bytes]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                    client_id="mlsentry-snapshot-reader", max_partition_fetch_bytes=4 << 20,
                                    **self.client_kwargs)
        await consumer.start()
        try:
            partition = TopicPartition(self.topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            end = (await consumer.end_offsets([partition]))[partition]
            latest: dict[str, bytes] = {}
            while await consumer.position(partition) < end:
                batch = await consumer.getmany(partition, timeout_ms=5000)
                if not batch:
                    raise SnapshotError(f"snapshot topic {self.topic} stopped answering before its end offset")
                for message in batch.get(partition, []):
                    if message.key is not None and message.value is not None:
                        latest[message.key.decode(errors="replace")] = message.value
            return latest
        finally:
            await consumer.stop()
