"""The ClickHouse incident store: one code path for embedded chDB and a real server.

``connect("chdb:///abs/dir")`` opens an embedded on-disk ClickHouse (chDB) and
``connect("http://host:8123")`` a server; both return a clickhouse-connect client, and
everything else here only uses the small :class:`ClickHouseClient` surface, so tests and
users can pass doubles.

chDB locking (measured with chdb 4.4 / clickhouse-connect 1.12):

* one process may have one chDB directory open at a time; any number of clients on that
  directory share the engine (a second client costs ~10 ms), and the engine shuts down
  when the last of them is closed, after which another directory can be opened;
* a second process cannot open a directory another process holds (the engine keeps an
  OS lock on ``<dir>/status``), not even read-only; the lock dies with its process, even
  on ``kill -9``. :func:`connect` turns both cases into :class:`StoreBusyError` with a
  message saying what to do (stop the worker, or query a ClickHouse server instead).

>>> sql_kind("select 1")
'SELECT'
>>> check_read_only("SELECT 1; DROP TABLE x")
Traceback (most recent call last):
...
streams.store.UnsafeQueryError: only one statement may be run; found a second one after ';'
"""

from __future__ import annotations

import fcntl
import os
import re
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, Iterable, Mapping, Protocol, Sequence
from urllib.parse import urlparse

from detectors.findings import STATUSES, ContainmentCommand, Incident
from detectors.incidents import EngineOutput, EvidenceRow

DEFAULT_DATABASE = "mlsentry"
READ_ONLY_KINDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
INCIDENT_COLUMNS = (
    "incident_id", "kind", "severity", "detected_at", "window_start", "window_end", "model_id",
    "model_version", "segment", "principal", "resource", "dataset", "detector", "score", "threshold",
    "evidence", "summary", "recommended_actions", "status", "version", "case_id", "updated_at", "playbook_id",
    "investigation_queries", "affected_predictions", "related_incidents", "impact_tier", "owners", "updates",
)  # fmt: skip
COMMAND_COLUMNS = (
    "command_id", "incident_id", "issued_at", "action", "target_type", "target", "params", "mode",
    "expires_at", "reversible", "reason", "version", "revert_of",
)  # fmt: skip
CONTAINMENT_LOG_COLUMNS = (*COMMAND_COLUMNS, "outcome")
EVIDENCE_COLUMNS = (
    "incident_id", "ts", "event_type", "event_id", "description", "principal", "model_id", "model_version",
    "dataset", "attributes",
)  # fmt: skip
DEAD_LETTER_COLUMNS = (
    "source_topic", "partition", "offset", "received_at", "reason", "error_kind", "event_type", "raw",
)  # fmt: skip
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClickHouseClient(Protocol):
    """The part of a clickhouse-connect client the store uses."""

    def command(self, cmd: str, parameters: Any = None, settings: Any = None) -> Any: ...

    def insert(self, table: str | None = None, data: Any = None, column_names: Any = "*", database: str | None = None, **kwargs: Any) -> Any: ...

    def query(self, query: str | None = None, parameters: Any = None, settings: Any = None, **kwargs: Any) -> Any: ...


class StoreBusyError(RuntimeError):
    """The chDB directory cannot be opened because another client or process holds chDB."""


class UnsafeQueryError(ValueError):
    """A statement refused by the read-only guard of :func:`query`."""


# ---- connecting ---------------------------------------------------------------------------


def connect(
    dsn: str,
    *,
    database: str = DEFAULT_DATABASE,
    username: str | None = None,
    password: str | None = None,
    secure: bool = False,
    verify: bool = True,
) -> Any:
    """A clickhouse-connect client for ``chdb:///abs/dir`` or ``http(s)://host:port``.

    chDB paths must be absolute (a relative path would silently depend on the working
    directory of whichever process opens it). The client's default database is left
    alone because ``database`` may not exist until :func:`ensure_schema` has run; all
    store SQL names ``database`` explicitly. DateTime columns come back as aware UTC
    datetimes (``tz_mode="aware"``). Close chDB clients when done: the directory stays
    locked against other processes until the last client of this process is closed.
    """
    _database_identifier(database)
    scheme = urlparse(dsn).scheme
    if scheme == "chdb":
        return _connect_chdb(dsn)
    if scheme in ("http", "https"):
        return _connect_http(dsn, username=username, password=password, secure=secure or scheme == "https",
                             verify=verify)
    raise ValueError(f"unsupported ClickHouse DSN {dsn!r}: use chdb:///absolute/dir or http(s)://host:port")


def chdb_path(dsn: str) -> str:
    """The absolute directory of a ``chdb:///abs/dir`` DSN (``ValueError`` otherwise)."""
    parsed = urlparse(dsn)
    if parsed.scheme != "chdb" or parsed.netloc or parsed.query or not parsed.path:
        raise ValueError(f"chDB DSN must look like chdb:///absolute/dir, got {dsn!r}")
    if not os.path.isabs(parsed.path):
        raise ValueError(f"chDB directory must be absolute, got {parsed.path!r}")
    return os.path.realpath(parsed.path)


def _connect_chdb(dsn: str) -> Any:
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import ProgrammingError

    path = chdb_path(dsn)
    os.makedirs(path, exist_ok=True)
    try:
        return clickhouse_connect.get_client(dsn=f"chdb://{path}", tz_mode="aware")
    except ProgrammingError as error:
        raise StoreBusyError(_busy_message(path, str(error))) from error


def _busy_message(path: str, detail: str) -> str:
    if "already initialized with path" in detail:
        return (
            f"cannot open chDB at {path}: this process already has another chDB directory open "
            f"(chDB allows one directory per process); close those clients first. [{detail}]"
        )
    if held_by_other_process(path):
        return (
            f"cannot open chDB at {path}: another process (e.g. a running mlsentry worker) holds it; "
            f"chDB allows one process per directory. Stop that process, or query a ClickHouse server "
            f"(http://host:8123) instead. [{detail}]"
        )
    return f"cannot open chDB at {path}: {detail}"


def held_by_other_process(path: str) -> bool:
    """True when another chDB engine holds the OS lock on ``<path>/status``.

    Only meaningful when this process has no chDB engine open on ``path`` itself.
    """
    try:
        fd = os.open(os.path.join(path, "status"), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor also drops a lock we may have taken
    return False


def connect_with(settings: Any) -> Any:
    """``connect`` with every ClickHouse field of a ``Settings`` (DSN, database, credentials, TLS)."""
    return connect(settings.resolved_clickhouse_dsn, database=settings.clickhouse_database,
                   username=settings.clickhouse_user or None, password=settings.clickhouse_password or None,
                   secure=settings.clickhouse_secure, verify=settings.clickhouse_verify)


def _connect_http(dsn: str, *, username: str | None, password: str | None, secure: bool, verify: bool) -> Any:
    import clickhouse_connect

    credentials: dict[str, Any] = {}
    if username:
        credentials["username"] = username
    if password:
        credentials["password"] = password
    return clickhouse_connect.get_client(dsn=dsn, secure=secure, verify=verify, tz_mode="aware", **credentials)


def _database_identifier(database: str) -> str:
    if not _IDENTIFIER.match(database):
        raise ValueError(f"database name must be a plain identifier, got {database!r}")
    return database


# ---- schema -------------------------------------------------------------------------------


def schema_statements(database: str = DEFAULT_DATABASE) -> list[str]:
    """The DDL statements of ``schemas/clickhouse.sql`` for ``database``, comments dropped."""
    text = (files("schemas") / "clickhouse.sql").read_text(encoding="utf-8")
    text = text.replace("{database}", _database_identifier(database))
    chunks = re.split(r"^\s*;\s*$", text, flags=re.MULTILINE)
    statements = ("\n".join(line for line in chunk.splitlines() if not line.lstrip().startswith("--")) for chunk in chunks)
    return [statement.strip() for statement in statements if statement.strip()]


def ensure_schema(client: ClickHouseClient, database: str = DEFAULT_DATABASE) -> None:
    """Create the database, tables and views if missing (safe to run any number of times)."""
    for statement in schema_statements(database):
        client.command(statement)


# ---- rows ---------------------------------------------------------------------------------


def utc(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (what DateTime64(3, 'UTC') takes and returns)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def incident_version(incident: Incident) -> int:
    """Later detections and later lifecycle states win; a replay writes the same version."""
    rank = STATUSES.index(incident.status) if incident.status in STATUSES else 0
    return max(incident.updated_at, incident.detected_at) * 10 + rank


def incident_row(incident: Incident) -> list[Any]:
    """One insert row in ``INCIDENT_COLUMNS`` order (a null segment becomes the empty map)."""
    record = incident.to_record()
    for name in ("detected_at", "window_start", "window_end", "updated_at"):
        record[name] = utc(record[name])
    record["segment"] = record["segment"] or {}
    record["version"] = incident_version(incident)
    return [record[name] for name in INCIDENT_COLUMNS]


def command_row(command: ContainmentCommand) -> list[Any]:
    """One insert row in ``COMMAND_COLUMNS`` order."""
    record = command.to_record()
    record["version"] = command.issued_at
    record["issued_at"] = utc(command.issued_at)
    record["expires_at"] = utc(command.expires_at)
    return [record[name] for name in COMMAND_COLUMNS]


def command_outcome(command: ContainmentCommand) -> str:
    """What happened to a command: logged only (dry run), published for enforcement, or downgraded by a guard."""
    if command.params.get("operator"):
        return "operator_revert"
    if command.params.get("guard"):
        return "downgraded_dry_run"
    return "logged_dry_run" if command.mode == "dry_run" else "published_enforce"


def containment_log_row(command: ContainmentCommand) -> list[Any]:
    """One insert row in ``CONTAINMENT_LOG_COLUMNS`` order."""
    return command_row(command) + [command_outcome(command)]


def evidence_row(row: EvidenceRow) -> list[Any]:
    """One insert row in ``EVIDENCE_COLUMNS`` order."""
    record = row.to_record()
    record["ts"] = utc(row.ts)
    return [record[name] for name in EVIDENCE_COLUMNS]


def dead_letter_row(record: Mapping[str, Any]) -> list[Any]:
    """One insert row in ``DEAD_LETTER_COLUMNS`` order; ``raw`` bytes are stored verbatim."""
    row = dict(record)
    row["received_at"] = utc(int(row["received_at"]))
    row["raw"] = bytes(row.get("raw") or b"")
    row.setdefault("event_type", None)
    return [row[name] for name in DEAD_LETTER_COLUMNS]


# ---- the sink -----------------------------------------------------------------------------


def _load_insert_path() -> None:
    """Import now what clickhouse-connect imports lazily on the first insert (pandas, about 0.7 s here).

    Otherwise the first incident a worker writes pays that import on its detection latency.
    """
    from clickhouse_connect.driver import options

    getattr(options, "pd", None)


class IncidentStore:
    """Sink writing incidents, containment commands, evidence and dead letters to ClickHouse.

    ``add_incident`` writes the latest state (``incidents``) and the timeline row
    (``incident_events``); ``add_command`` writes ``containment_commands`` and
    ``containment_log``; ``add_evidence`` the evidence archive.

    ``add_*`` only buffers; :meth:`flush` sends one columnar insert per table. When an
    insert fails the rows stay buffered (tables already written are dropped from the
    buffer; re-writing incidents or commands would collapse anyway), so the caller can
    retry and must not commit Kafka offsets.
    """

    def __init__(self, client: ClickHouseClient, database: str = DEFAULT_DATABASE, max_buffer: int = 10_000) -> None:
        self.client = client
        self.database = _database_identifier(database)
        self.max_buffer = max_buffer
        self._buffers: dict[str, tuple[Sequence[str], list[list[Any]]]] = {
            "incidents": (INCIDENT_COLUMNS, []),
            "incident_events": (INCIDENT_COLUMNS, []),
            "containment_commands": (COMMAND_COLUMNS, []),
            "containment_log": (CONTAINMENT_LOG_COLUMNS, []),
            "incident_evidence": (EVIDENCE_COLUMNS, []),
            "dead_letters": (DEAD_LETTER_COLUMNS, []),
        }
        _load_insert_path()

    def add_incident(self, incident: Incident) -> None:
        row = incident_row(incident)
        self._buffers["incident_events"][1].append(list(row))
        self._add("incidents", row)

    def add_command(self, command: ContainmentCommand) -> None:
        self._buffers["containment_log"][1].append(containment_log_row(command))
        self._add("containment_commands", command_row(command))

    def add_evidence(self, row: EvidenceRow) -> None:
        self._add("incident_evidence", evidence_row(row))

    def add_output(self, output: EngineOutput) -> None:
        """Everything an engine output holds: incident states, commands and evidence rows."""
        for incident in output.incidents:
            self.add_incident(incident)
        for command in output.commands:
            self.add_command(command)
        for row in output.evidence:
            self.add_evidence(row)

    def add_dead_letter(self, record: dict) -> None:
        self._add("dead_letters", dead_letter_row(record))

    def pending(self) -> int:
        """Rows buffered and not yet written."""
        return sum(len(rows) for _, rows in self._buffers.values())

    def flush(self) -> int:
        """Write every buffered row; returns how many were written."""
        written = 0
        for table, (columns, rows) in self._buffers.items():
            if rows:
                self.client.insert(table, rows, column_names=list(columns), database=self.database)
                written += len(rows)
                rows.clear()
        return written

    def _add(self, table: str, row: list[Any]) -> None:
        self._buffers[table][1].append(row)
        if self.pending() >= self.max_buffer:
            self.flush()


# ---- investigators' queries ---------------------------------------------------------------


def query(
    client: ClickHouseClient,
    sql: str,
    parameters: dict | None = None,
    *,
    readonly: bool = True,
) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` (``{name:Type}`` placeholders bound from ``parameters``); column names and rows.

    With ``readonly`` the statement must pass :func:`check_read_only` and is sent with the
    setting ``readonly=1``, which ClickHouse enforces server-side as well.
    """
    settings: dict[str, Any] = {}
    if readonly:
        check_read_only(sql)
        settings["readonly"] = 1
    result = client.query(sql.strip().rstrip(";"), parameters=parameters or None, settings=settings or None)
    return list(result.column_names), [tuple(row) for row in result.result_rows]


def check_read_only(sql: str) -> None:
    """Raise :class:`UnsafeQueryError` unless ``sql`` is one read-only statement."""
    code = strip_literals(sql)
    body = code.strip().rstrip(";")
    if ";" in body:
        raise UnsafeQueryError("only one statement may be run; found a second one after ';'")
    kind = sql_kind(code)
    if kind not in READ_ONLY_KINDS:
        raise UnsafeQueryError(f"only {', '.join(sorted(READ_ONLY_KINDS))} statements are allowed, got {kind or 'nothing'}")
    if re.search(r"\bINTO\s+OUTFILE\b", code, flags=re.IGNORECASE):
        raise UnsafeQueryError("INTO OUTFILE writes a file and is not allowed")


def sql_kind(sql: str) -> str:
    """The first keyword of ``sql`` in upper case ('' when there is none)."""
    match = re.match(r"\s*\(*\s*([A-Za-z]+)", strip_literals(sql))
    return match.group(1).upper() if match else ""


_LEXEME = re.compile(
    r"""'(?:[^'\\]|\\.|'')*'?      # string literal
      | "(?:[^"\\]|\\.|"")*"?      # quoted identifier
      | `(?:[^`\\]|\\.|``)*`?      # back-quoted identifier
      | --[^\n]*|\#[^\n]*          # line comments
      | /\*.*?(?:\*/|\Z)           # block comment
    """,
    re.VERBOSE | re.DOTALL,
)


def strip_literals(sql: str) -> str:
    """``sql`` with comments removed and literals/quoted names blanked, so keywords and ';' inside them are ignored."""
    return _LEXEME.sub(lambda match: " " if match.group(0)[0] in "-#/" else "''", sql)


# ---- display ------------------------------------------------------------------------------


def format_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], max_width: int = 60) -> str:
    """A fixed-width text table; cells longer than ``max_width`` are cut with '…'."""
    cells = [[_cell(value, max_width) for value in row] for row in rows]
    header = [_cell(name, max_width) for name in columns]
    widths = [max([len(header[i])] + [len(row[i]) for row in cells]) for i in range(len(header))]
    lines = [_line(header, widths), "  ".join("-" * width for width in widths)]
    lines += [_line(row, widths) for row in cells]
    lines.append(f"({len(cells)} row{'' if len(cells) == 1 else 's'})")
    return "\n".join(lines)


def _cell(value: Any, max_width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, datetime):
        text = value.isoformat(sep=" ", timespec="milliseconds")
    elif isinstance(value, bytes):
        text = value.decode("utf-8", errors="backslashreplace")
    else:
        text = str(value)
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= max_width else text[: max(max_width - 1, 0)] + "…"


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(value.ljust(width) for value, width in zip(values, widths)).rstrip()
