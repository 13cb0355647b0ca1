-- mlsentry ClickHouse schema: incidents, containment commands and dead letters for investigators.
-- Statements are separated by lines holding only ';'. `{database}` is replaced by streams.store.ensure_schema
-- (default mlsentry). Every statement is IF NOT EXISTS, so applying the file twice is a no-op.
--
-- Conventions:
--   * Timestamps are DateTime64(3, 'UTC'); the Avro contracts carry epoch milliseconds.
--   * incidents.segment is Map(String, String); a null segment (the incident concerns no segment) is stored as
--     the empty map {} because Map cannot be Nullable. Filter with `empty(segment)` / `notEmpty(segment)`.
--   * incidents.version = detected_at_ms * 10 + status rank (open 0, contained 1, resolved 2): deterministic, so
--     a replay writes identical rows, while a later detection or a later lifecycle state wins the merge.
--   * ReplacingMergeTree collapses rows with the same ORDER BY key only at merge time: read through
--     incidents_latest (FINAL) or aggregate with argMax(column, version).
--   * dead_letters.raw holds the original message bytes verbatim (String is a byte string, not text); use
--     hex(raw), base64Encode(raw) or raw directly when it happens to be UTF-8.
;
CREATE DATABASE IF NOT EXISTS {database}
;
CREATE TABLE IF NOT EXISTS {database}.incidents
(
    incident_id String,
    kind LowCardinality(String),
    severity LowCardinality(String),
    detected_at DateTime64(3, 'UTC'),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    model_id Nullable(String),
    model_version Nullable(String),
    segment Map(String, String) COMMENT 'empty map when the incident has no segment',
    principal Nullable(String),
    resource Nullable(String),
    dataset Nullable(String),
    detector LowCardinality(String),
    score Float64,
    threshold Float64,
    evidence Map(String, String),
    summary String,
    recommended_actions Array(String),
    status LowCardinality(String),
    version UInt64 COMMENT 'detected_at ms * 10 + status rank; highest wins',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(detected_at)
ORDER BY incident_id
COMMENT 'One row per incident version; read incidents_latest for the current state'
;
CREATE TABLE IF NOT EXISTS {database}.containment_commands
(
    command_id String,
    incident_id String,
    issued_at DateTime64(3, 'UTC'),
    action LowCardinality(String),
    target_type LowCardinality(String),
    target String,
    params Map(String, String),
    mode LowCardinality(String),
    expires_at DateTime64(3, 'UTC'),
    reversible Bool,
    reason String,
    version UInt64 COMMENT 'issued_at ms; highest wins',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(issued_at)
ORDER BY command_id
;
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    source_topic LowCardinality(String),
    partition Int32,
    offset Int64,
    received_at DateTime64(3, 'UTC'),
    reason String,
    error_kind LowCardinality(String),
    event_type Nullable(String),
    raw String COMMENT 'original message bytes, verbatim',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (source_topic, partition, offset)
TTL toDateTime(received_at) + INTERVAL 30 DAY
;
CREATE VIEW IF NOT EXISTS {database}.incidents_latest AS
SELECT *
FROM {database}.incidents FINAL
;
CREATE VIEW IF NOT EXISTS {database}.open_incidents_by_severity AS
SELECT
    severity,
    count() AS open_incidents,
    min(detected_at) AS oldest_detected_at,
    max(detected_at) AS newest_detected_at
FROM {database}.incidents FINAL
WHERE status = 'open'
GROUP BY severity
ORDER BY indexOf(['critical', 'high', 'medium', 'low', 'info'], severity)
