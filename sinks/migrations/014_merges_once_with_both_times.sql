-- cdp.merges becomes one row per merge. The stitcher records a merge each time a profile's founding identifier
-- leaves its own label; a later event older than the profile's identifiers (a CRM row with an old date) moves
-- the label back, which recorded the same pair both ways (A into B, then B into A). Every record is kept in
-- merges_store (old profile ids are resolved through all of them, sinks/profile_ids.py); the `merges` view
-- (sinks/views/merges.sql) shows each dissolved profile once, with its latest merge, and none for a profile that
-- holds identifiers again. `merged_at` was the event's time: it is now when the stitcher merged, `event_time`
-- the event's (older records keep their one time in both).
CREATE TABLE IF NOT EXISTS {db}.merges_store
(
    from_profile String,
    into_profile String,
    cause        String,
    merged_at    DateTime64(3, 'UTC'),
    event_time   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (from_profile, into_profile)
SETTINGS non_replicated_deduplication_window = 1000;

-- The records of the old table, where a store has one (stores made before this migration). A new store, and a
-- rerun after the drop below, find an empty table of the store's shape, whose columns the SELECT reads alike.
CREATE TABLE IF NOT EXISTS {db}.merges AS {db}.merges_store;

INSERT INTO {db}.merges_store
SELECT from_profile, into_profile, cause, merged_at, merged_at FROM {db}.merges;

DROP TABLE IF EXISTS {db}.merges;
