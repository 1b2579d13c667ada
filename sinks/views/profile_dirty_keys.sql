-- Identity keys touched (by an event or an identity change) since the rollup's watermark.
CREATE VIEW {db}.profile_dirty_keys AS
SELECT DISTINCT key FROM {db}.profile_touches
WHERE is_identity = 1 AND touched_at >= (SELECT max(watermark) FROM {db}.profile_rollup)
