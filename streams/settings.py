"""One frozen settings model, read once at start.

Precedence: explicit keyword arguments > environment variables (``MLSENTRY_*``) >
defaults. Every field's environment variable is its name upper-cased with the
``MLSENTRY_`` prefix (``clickhouse_dsn`` -> ``MLSENTRY_CLICKHOUSE_DSN``). Secrets
(passwords and keys, see ``SECRET_FIELDS``) may instead be read from a file named by
``<VAR>_FILE`` (``MLSENTRY_SNAPSHOT_KEY_FILE=/run/secrets/snapshot``: the file's text
with one trailing newline removed), so they need not sit in the environment; setting
both the variable and its ``_FILE`` form is an error. Secrets are masked whenever
settings are printed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from detectors.engine import DEFAULT_DETECTORS

ENV_PREFIX = "MLSENTRY_"
EMBEDDED = "embedded"
#: Fields holding secrets: masked by ``describe()`` and readable from ``MLSENTRY_<NAME>_FILE``.
SECRET_FIELDS = frozenset({
    "clickhouse_password", "kafka_sasl_password", "kafka_tls_key_password", "command_signing_key", "snapshot_key",
})
SASL_MECHANISMS = ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SECURITY_PROTOCOLS = ("", "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class Settings:
    """Everything the worker, replay and demo need to know, in one place."""

    #: ``host:port[,host:port]`` of Kafka, or ``embedded`` to start the bundled tansu broker.
    bootstrap_servers: str = "localhost:9092"
    group_id: str = "mlsentry"
    topic_predictions: str = "mlsentry.predictions"
    topic_access: str = "mlsentry.access"
    topic_data_changes: str = "mlsentry.data_changes"
    topic_incidents: str = "mlsentry.incidents"
    topic_containment: str = "mlsentry.containment"
    #: Responders acknowledge commands here (JSON: command_id, action, target, mode, outcome, acked_at).
    topic_containment_acks: str = "mlsentry.containment_acks"
    topic_dead_letter: str = "mlsentry.dead_letter"
    #: Partitions used when mlsentry creates its topics (existing topics are left as they are).
    topic_partitions: int = 4
    #: Where local state lives (embedded ClickHouse, Faust data dir).
    data_dir: str = "./data"
    #: ``chdb:///abs/dir`` (embedded) or ``http(s)://host:8123``; empty means ``chdb://<data_dir>/clickhouse``.
    clickhouse_dsn: str = ""
    clickhouse_database: str = "mlsentry"
    clickhouse_user: str = ""
    clickhouse_password: str = ""
    #: Comma-separated registered detector names.
    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    containment_mode: str = "dry_run"
    containment_kill_switch: bool = False
    containment_min_severity: str = "medium"
    containment_ttl_s: int = 3600
    incident_cooldown_s: int = 3600
    #: TOML file of models/datasets with impact tier and owners (see config/assets.toml); empty: defaults.
    assets_file: str = ""
    #: TOML containment policy (see config/policy.toml); empty: built-in policy from the fields above.
    policy_file: str = ""
    #: Events per processing batch and the longest wait to fill one. Batches are only as big as the backlog;
    #: under load a big one spreads each batch's fixed cost (one chDB insert per table, ~11 ms each; the
    #: detectors' numpy calls per version and partition) over more events, so the worker catches up instead
    #: of queueing (p99 latency at 39k events/s: 0.4-0.8 s with 5000, 0.6-1.2 s with 2000; draining a backlog,
    #: 20000 ran 5-10% faster than 5000).
    batch_size: int = 20_000
    batch_within_s: float = 0.05
    #: Kafka consumer-group session timeout. Real Kafka rejects values under 6 s by default.
    session_timeout_s: float = 10.0
    #: Static group membership (KIP-345): a stable id per worker (a StatefulSet pod name, say). A worker
    #: restarted with the same id takes its partitions back at once instead of waiting for the group to
    #: expire its dead predecessor; a worker that does not come back keeps its partitions unread until
    #: its session times out. Empty: dynamic membership.
    group_instance_id: str = ""
    max_message_bytes: int = 1 << 20
    #: HTTP port of the worker's Faust web server (GET /health, GET /stats); 0 turns it off.
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    max_field_bytes: int = 1 << 16

    # ---- Kafka client security (applied to every consumer, producer and admin client the worker creates)
    #: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``; empty derives it from the two settings below.
    kafka_security_protocol: str = ""
    #: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; empty means no SASL.
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    #: Secret (also ``MLSENTRY_KAFKA_SASL_PASSWORD_FILE``).
    kafka_sasl_password: str = ""
    #: Use TLS to the brokers; implied by a CA/cert file or an ``*SSL`` protocol.
    kafka_tls: bool = False
    #: PEM CA bundle to verify the brokers (empty: the system's trust store).
    kafka_tls_cafile: str = ""
    #: PEM client certificate and key for mutual TLS (both or neither).
    kafka_tls_certfile: str = ""
    kafka_tls_keyfile: str = ""
    #: Secret: password of an encrypted ``kafka_tls_keyfile``.
    kafka_tls_key_password: str = ""

    # ---- ClickHouse connection security (used when the DSN is http(s)://)
    #: Connect over HTTPS (also implied by an ``https://`` DSN).
    clickhouse_secure: bool = False
    #: Verify the server certificate; turning this off is for throw-away test servers only.
    clickhouse_verify: bool = True

    # ---- integrity keys
    #: Secret HMAC-SHA256 key signing containment commands (Kafka header ``mlsentry-signature``).
    #: Required when ``containment_mode=enforce``; empty in ``dry_run`` sends unsigned commands.
    command_signing_key: str = ""
    #: Secret HMAC-SHA256 key of detector-state snapshots. Empty disables snapshots: a worker
    #: taking over a partition then rebuilds state by replaying the partition from its start.
    snapshot_key: str = ""

    # ---- detector-state snapshots (see docs/guarantees.md)
    #: Compacted topic holding the latest snapshot of each (group, topic, partition).
    topic_snapshots: str = "mlsentry.snapshots"
    #: Snapshot a partition after this many new events or this many seconds with new events, whichever first.
    snapshot_every_events: int = 20_000
    snapshot_every_s: float = 30.0

    # ---- incident-store outages
    #: Directory of the disk spill (empty: ``<data_dir>/spill``).
    spill_dir: str = ""
    #: Bytes of spilled outputs after which the worker stops consuming until the store drains them.
    spill_max_bytes: int = 256 << 20
    #: Longest wait between retries of a failing store (backoff doubles from 0.2 s up to this).
    sink_retry_max_s: float = 30.0

    # ---- process
    #: Young-generation threshold of Python's garbage collector (see streams/runtime.py); 0 keeps 700.
    gc_young_threshold: int = 100_000
    #: How long a thread may hold the GIL while the store writer waits, in ms (see streams/runtime.py); 0 keeps 5.
    gil_switch_interval_ms: float = 1.0
    #: Read each fetch's record batches into offsets and values (streams/fetch.py) rather than through
    #: aiokafka's ``getmany``, which makes a record object per message; off falls back to ``getmany``.
    fetch_whole_batches: bool = True

    # ---- event-time rule (enforced in streams.pipeline before detectors see an event)
    #: Events stamped more than this far ahead of the wall clock at receipt are dead-lettered.
    max_event_future_s: float = 86_400.0
    #: Events older than the partition's watermark minus this are dead-lettered (the watermark
    #: is the newest accepted event time, never ahead of the wall clock at its receipt).
    allowed_lateness_s: float = 7 * 86_400.0

    # ---- flooding
    #: At most this many access events of one principal per batch reach the detectors; the excess
    #: of a batch becomes one dead letter per principal. 0 disables the cap. Predictions are not capped.
    max_events_per_key_per_batch: int = 1_000

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``) and explicit ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = _raw_value(spec.name, environ)
            if raw is not None:
                values[spec.name] = _parse(spec.name, raw, cls._default_of(spec))
        values.update({name: value for name, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    @staticmethod
    def _default_of(spec: dataclasses.Field[Any]) -> Any:
        if spec.default is not dataclasses.MISSING:
            return spec.default
        return spec.default_factory()  # type: ignore[misc]

    def validate(self) -> None:
        if self.containment_mode not in ("dry_run", "enforce"):
            raise ValueError(f"MLSENTRY_CONTAINMENT_MODE must be dry_run or enforce, not {self.containment_mode!r}")
        if self.batch_size < 1 or self.topic_partitions < 1:
            raise ValueError("batch_size and topic_partitions must be positive")
        if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"MLSENTRY_KAFKA_SASL_MECHANISM must be one of {SASL_MECHANISMS[1:]}, "
                             f"not {self.kafka_sasl_mechanism!r}")
        if self.kafka_security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"MLSENTRY_KAFKA_SECURITY_PROTOCOL must be one of {SECURITY_PROTOCOLS[1:]}")
        if bool(self.kafka_tls_certfile) != bool(self.kafka_tls_keyfile):
            raise ValueError("MLSENTRY_KAFKA_TLS_CERTFILE and MLSENTRY_KAFKA_TLS_KEYFILE go together")
        if self.containment_mode == "enforce" and not self.command_signing_key:
            raise ValueError("containment_mode=enforce needs MLSENTRY_COMMAND_SIGNING_KEY: responders must be able "
                             "to reject forged commands")
        if self.snapshot_every_events < 1 or self.snapshot_every_s <= 0 or self.spill_max_bytes < 1:
            raise ValueError("snapshot intervals and spill_max_bytes must be positive")
        if self.max_event_future_s < 0 or self.allowed_lateness_s < 0 or self.max_events_per_key_per_batch < 0:
            raise ValueError("event-time bounds and the per-key cap must not be negative")

    @property
    def embedded_broker(self) -> bool:
        return self.bootstrap_servers == EMBEDDED

    @property
    def resolved_clickhouse_dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return "chdb://" + str((Path(self.data_dir) / "clickhouse").resolve())

    @property
    def resolved_spill_dir(self) -> str:
        return self.spill_dir or str((Path(self.data_dir) / "spill").resolve())

    @property
    def input_topics(self) -> dict[str, str]:
        """topic name -> event type carried on it."""
        return {
            self.topic_predictions: "prediction",
            self.topic_access: "access",
            self.topic_data_changes: "data_change",
        }

    def describe(self) -> dict[str, str]:
        """Printable settings with secrets masked."""
        shown = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name in SECRET_FIELDS and value:
                value = "********"
            elif spec.name == "clickhouse_dsn":
                value = _mask_dsn(str(value))
            shown[spec.name] = ",".join(value) if isinstance(value, tuple) else str(value)
        return shown

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def to_environ(self) -> dict[str, str]:
        """Every setting as its ``MLSENTRY_*`` variable (secrets included): ``load`` reads them back unchanged.

        For starting ``mlsentry worker`` processes with exactly these settings (tests, benchmarks).
        """
        environ = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, tuple):
                text = ",".join(value)
            else:
                text = str(value)
            environ[env_var(spec.name)] = text
        return environ


def env_var(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    return ENV_PREFIX + field_name.upper()


def _raw_value(name: str, environ: Mapping[str, str]) -> str | None:
    """The value of ``name`` from the environment, or for secrets from the file ``<VAR>_FILE`` names."""
    raw = environ.get(env_var(name))
    path = environ.get(env_var(name) + "_FILE") if name in SECRET_FIELDS else None
    if path is None:
        return raw
    if raw is not None:
        raise ValueError(f"set {env_var(name)} or {env_var(name)}_FILE, not both")
    text = Path(path).read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def _parse(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{env_var(name)}={raw!r} is not a boolean")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _mask_dsn(dsn: str) -> str:
    """Hide a password embedded in a DSN (``scheme://user:secret@host``)."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}"
