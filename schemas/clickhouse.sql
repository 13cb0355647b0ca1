-- mlsentry ClickHouse schema: incidents (latest state and every update), containment commands and their log,
-- the evidence archive and dead letters, plus views for the common questions of an investigation.
-- Statements are separated by lines holding only ';'. `{database}` is replaced by streams.store.ensure_schema
-- (default mlsentry). Every statement is IF NOT EXISTS, so applying the file twice is a no-op.
--
-- Conventions:
--   * Timestamps are DateTime64(3, 'UTC'); the Avro contracts carry epoch milliseconds.
--   * incidents.segment is Map(String, String); a null segment (the incident concerns no segment) is stored as
--     the empty map {} because Map cannot be Nullable. Filter with `empty(segment)` / `notEmpty(segment)`.
--   * incidents.version = max(updated_at, detected_at) ms * 10 + status rank (open 0, contained 1, resolved 2):
--     deterministic, so a replay writes identical rows, while a later update or lifecycle state wins the merge.
--   * incident_events keeps every state an incident went through (the timeline); incidents only the latest.
--   * containment_log holds every command and every revert (action = 'revert', revert_of = the undone command)
--     with its mode and outcome; containment_commands is kept for existing readers (same rows, fewer columns).
--   * incident_evidence archives the raw events that touched an open incident (at most N per incident, set in
--     the policy file) for 30 days of event time.
--   * Views created with OR REPLACE so upgrades pick up new definitions; ALTER ... ADD COLUMN IF NOT EXISTS
--     upgrades tables created by older versions.
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
    version UInt64 COMMENT 'max(updated_at, detected_at) ms * 10 + status rank; highest wins',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    case_id Nullable(String),
    updated_at DateTime64(3, 'UTC'),
    playbook_id LowCardinality(String),
    investigation_queries Array(String),
    affected_predictions UInt64,
    related_incidents Array(String),
    impact_tier LowCardinality(String),
    owners Array(String),
    updates UInt32
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(detected_at)
ORDER BY incident_id
COMMENT 'One row per incident version; read incidents_latest for the current state'
;
ALTER TABLE {database}.incidents
    ADD COLUMN IF NOT EXISTS case_id Nullable(String),
    ADD COLUMN IF NOT EXISTS updated_at DateTime64(3, 'UTC'),
    ADD COLUMN IF NOT EXISTS playbook_id LowCardinality(String),
    ADD COLUMN IF NOT EXISTS investigation_queries Array(String),
    ADD COLUMN IF NOT EXISTS affected_predictions UInt64,
    ADD COLUMN IF NOT EXISTS related_incidents Array(String),
    ADD COLUMN IF NOT EXISTS impact_tier LowCardinality(String),
    ADD COLUMN IF NOT EXISTS owners Array(String),
    ADD COLUMN IF NOT EXISTS updates UInt32
;
CREATE TABLE IF NOT EXISTS {database}.incident_events AS {database}.incidents
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(detected_at)
ORDER BY (incident_id, version)
COMMENT 'Every state an incident went through (open, each update, contained, resolved): the timeline'
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
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    revert_of Nullable(String)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(issued_at)
ORDER BY command_id
;
ALTER TABLE {database}.containment_commands ADD COLUMN IF NOT EXISTS revert_of Nullable(String)
;
CREATE TABLE IF NOT EXISTS {database}.containment_log
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
    revert_of Nullable(String) COMMENT 'for action revert: the command undone',
    outcome LowCardinality(String) COMMENT 'logged_dry_run | published_enforce | downgraded_dry_run | operator_revert',
    version UInt64 COMMENT 'issued_at ms; highest wins',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(issued_at)
ORDER BY command_id
COMMENT 'Every containment command and revert, with mode and outcome'
;
CREATE TABLE IF NOT EXISTS {database}.incident_evidence
(
    incident_id String,
    ts DateTime64(3, 'UTC'),
    event_type LowCardinality(String),
    event_id String,
    description String,
    principal Nullable(String),
    model_id Nullable(String),
    model_version Nullable(String),
    dataset Nullable(String),
    attributes Map(String, String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (incident_id, ts, event_id, event_type)
TTL toDateTime(ts) + INTERVAL 30 DAY
COMMENT 'Raw events that touched an open incident (bounded per incident), kept 30 days'
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
-- At-least-once delivery can dead-letter the same message twice (a batch re-fetched after a
-- rebalance): one message is one (source_topic, partition, offset), so query with FINAL.
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (source_topic, partition, offset)
TTL toDateTime(received_at) + INTERVAL 30 DAY
;
CREATE OR REPLACE VIEW {database}.incidents_latest AS
SELECT *
FROM {database}.incidents FINAL
;
-- Open means not resolved: 'open' and 'contained' incidents both still need someone.
CREATE OR REPLACE VIEW {database}.open_incidents_by_severity AS
SELECT
    severity,
    count() AS open_incidents,
    min(detected_at) AS oldest_detected_at,
    max(detected_at) AS newest_detected_at
FROM {database}.incidents FINAL
WHERE status != 'resolved'
GROUP BY severity
ORDER BY indexOf(['critical', 'high', 'medium', 'low', 'info'], severity)
;
-- Timeline of a case: every state of every incident sharing a case_id.
--   SELECT * FROM mlsentry.case_timeline WHERE case_id = '...' ORDER BY updated_at
CREATE OR REPLACE VIEW {database}.case_timeline AS
SELECT case_id, updated_at, incident_id, kind, severity, status,
       coalesce(principal, dataset, concat(model_id, ':', model_version)) AS subject, summary
FROM {database}.incident_events FINAL
WHERE case_id IS NOT NULL
;
-- Everything a principal did in a window that mlsentry saw: archived events, incidents, containment.
--   SELECT * FROM mlsentry.principal_activity(principal = 'contractor-17',
--       since = '2026-12-01 00:00:00', until = '2026-12-02 00:00:00') ORDER BY ts
CREATE OR REPLACE VIEW {database}.principal_activity AS
SELECT ts, 'event' AS source, event_type AS what, description, incident_id
FROM {database}.incident_evidence FINAL
WHERE principal = {principal:String} AND ts BETWEEN {since:DateTime64(3, 'UTC')} AND {until:DateTime64(3, 'UTC')}
UNION ALL
SELECT detected_at AS ts, 'incident' AS source, kind AS what, summary AS description, incident_id
FROM {database}.incidents FINAL
WHERE principal = {principal:String} AND detected_at BETWEEN {since:DateTime64(3, 'UTC')} AND {until:DateTime64(3, 'UTC')}
UNION ALL
SELECT issued_at AS ts, 'containment' AS source, action AS what, reason AS description, incident_id
FROM {database}.containment_log FINAL
WHERE target = {principal:String} AND issued_at BETWEEN {since:DateTime64(3, 'UTC')} AND {until:DateTime64(3, 'UTC')}
;
-- All incidents touching a dataset version: the data incidents themselves and every incident in their cases.
--   SELECT * FROM mlsentry.dataset_version_incidents(dataset = 'fraud-train', version = 'v-hotfix-1')
CREATE OR REPLACE VIEW {database}.dataset_version_incidents AS
SELECT incident_id, case_id, kind, severity, status, detected_at,
       coalesce(principal, dataset, concat(model_id, ':', model_version)) AS subject, summary
FROM {database}.incidents FINAL
WHERE (dataset = {dataset:String} AND evidence['version'] = {version:String})
   OR (case_id IS NOT NULL AND case_id IN (
        SELECT case_id FROM {database}.incidents FINAL
        WHERE dataset = {dataset:String} AND evidence['version'] = {version:String} AND case_id IS NOT NULL))
