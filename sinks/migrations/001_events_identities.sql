-- Events, exactly once visible: the store is a ReplacingMergeTree keyed on message_id inside the sort key,
-- inserts carry deduplication tokens (non-replicated tables need non_replicated_deduplication_window for that),
-- and analysts read the `events` view, which applies FINAL so a redelivered event never shows twice.
CREATE TABLE IF NOT EXISTS {db}.events_store
(
    message_id   String,
    channel      LowCardinality(String),
    source_id    String,
    type         LowCardinality(String),
    event        String,
    anonymous_id String,
    user_id      String,
    profile_id   String,
    identity_key String,
    timestamp    DateTime64(3, 'UTC'),
    received_at  DateTime64(3, 'UTC'),
    properties   String,
    context      String,
    traits       String,
    ingested_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (toDate(timestamp), type, event, message_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Identifier -> current profile. A node's profile only changes towards the surviving profile, and `version`
-- grows with every change, so the last version is the current one.
CREATE TABLE IF NOT EXISTS {db}.identities_store
(
    id_type    LowCardinality(String),
    id_value   String,
    profile_id String,
    first_seen DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (id_type, id_value)
SETTINGS non_replicated_deduplication_window = 1000;

-- Links refused by the identity rules (limits, blocked values): queryable so a refused link is never silent.
CREATE TABLE IF NOT EXISTS {db}.identity_refusals
(
    node       String,
    peer       String,
    reason     String,
    cause      String,
    refused_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (node, peer, cause)
SETTINGS non_replicated_deduplication_window = 1000
