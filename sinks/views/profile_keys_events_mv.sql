-- The identity keys of the events stitched with each profile.
CREATE MATERIALIZED VIEW {db}.profile_keys_events_mv TO {db}.profile_keys AS
SELECT DISTINCT profile_id, key FROM {db}.events_by_key WHERE is_identity = 1 AND profile_id != ''
