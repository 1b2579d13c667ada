-- The per-key tables are read a few scattered keys at a time (a profile's keys, a batch's touched members): with
-- granules of 1024 rows instead of 8192, such a read decodes an eighth of the rows. The granule size is fixed when a
-- table is created, so they are created again, empty, and their materialized views with them: at the next start
-- sinks/migrate.py re-creates the missing views and fills the tables from the events (the views' `history` lines;
-- copies collapse in events_by_key, the argMax states are idempotent). The views that read events_by_key go first.
DROP VIEW IF EXISTS {db}.profile_touches_events_mv;
DROP VIEW IF EXISTS {db}.profile_keys_events_mv;
DROP VIEW IF EXISTS {db}.events_by_key_mv;
DROP VIEW IF EXISTS {db}.profile_traits_by_key_mv;
DROP VIEW IF EXISTS {db}.consent_by_key_mv;

DROP TABLE IF EXISTS {db}.events_by_key;
CREATE TABLE IF NOT EXISTS {db}.events_by_key
(
    key          String,
    message_id   String,
    profile_id   String,
    is_identity  UInt8,
    is_anonymous UInt8,
    channel      LowCardinality(String),
    type         LowCardinality(String),
    event        String,
    timestamp    DateTime64(3, 'UTC'),
    revenue      Float64,
    currency     LowCardinality(String),
    properties   String,
    ingested_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY (key, message_id)
SETTINGS old_parts_lifetime = 30, index_granularity = 1024;

DROP TABLE IF EXISTS {db}.profile_traits_by_key;
CREATE TABLE IF NOT EXISTS {db}.profile_traits_by_key
(
    key        String,
    profile_id String,
    kind       LowCardinality(String),
    name       String,
    value      AggregateFunction(argMax, String, Tuple(DateTime64(3, 'UTC'), String, DateTime64(3, 'UTC'), UInt32))
)
ENGINE = AggregatingMergeTree
ORDER BY (key, profile_id, kind, name)
SETTINGS old_parts_lifetime = 30, index_granularity = 1024;

DROP TABLE IF EXISTS {db}.consent_by_key;
CREATE TABLE IF NOT EXISTS {db}.consent_by_key
(
    key        String,
    profile_id String,
    purpose    LowCardinality(String),
    choice     AggregateFunction(argMax, Tuple(UInt8, DateTime64(3, 'UTC'), UInt8), Tuple(UInt8, DateTime64(3, 'UTC'), String))
)
ENGINE = AggregatingMergeTree
ORDER BY (key, profile_id, purpose)
SETTINGS old_parts_lifetime = 30, index_granularity = 1024;
