"""One frozen settings model, read once at start.

Precedence: explicit keyword arguments > environment variables (``MLSENTRY_*``) >
defaults. Every field's environment variable is its name upper-cased with the
``MLSENTRY_`` prefix (``clickhouse_dsn`` -> ``MLSENTRY_CLICKHOUSE_DSN``). Secrets are
masked whenever settings are printed.
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
_SECRET_FIELDS = frozenset({"clickhouse_password"})


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
    #: Events per processing batch and the longest wait to fill one.
    batch_size: int = 2000
    batch_within_s: float = 0.05
    #: Kafka consumer-group session timeout. Real Kafka rejects values under 6 s by default.
    session_timeout_s: float = 10.0
    max_message_bytes: int = 1 << 20
    max_field_bytes: int = 1 << 16

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``) and explicit ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = environ.get(env_var(spec.name))
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

    @property
    def embedded_broker(self) -> bool:
        return self.bootstrap_servers == EMBEDDED

    @property
    def resolved_clickhouse_dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return "chdb://" + str((Path(self.data_dir) / "clickhouse").resolve())

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
            if spec.name in _SECRET_FIELDS and value:
                value = "********"
            elif spec.name == "clickhouse_dsn":
                value = _mask_dsn(str(value))
            shown[spec.name] = ",".join(value) if isinstance(value, tuple) else str(value)
        return shown

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def env_var(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    return ENV_PREFIX + field_name.upper()


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
