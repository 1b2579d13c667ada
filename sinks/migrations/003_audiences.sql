-- Audience definitions, as analysts see them (the source of truth is the compacted topic cdp.audiences).
CREATE TABLE IF NOT EXISTS {db}.audiences
(
    audience_id String,
    name        String,
    scope       LowCardinality(String),
    rule        String,
    created_at  DateTime64(3, 'UTC'),
    deleted     UInt8,
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY audience_id;

-- Membership history: one row per change (entered / exited), with its time.
CREATE TABLE IF NOT EXISTS {db}.audience_members
(
    audience_id String,
    member      String,
    member_type LowCardinality(String),
    status      Enum8('entered' = 1, 'exited' = 2),
    changed_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (audience_id, member, changed_at, status)
SETTINGS non_replicated_deduplication_window = 1000
