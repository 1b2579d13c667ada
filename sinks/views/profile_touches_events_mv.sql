-- The keys (and stitched profile) an insert of events touched, for the rollup and the audience evaluator.
CREATE MATERIALIZED VIEW {db}.profile_touches_events_mv TO {db}.profile_touches AS
SELECT now64(6, 'UTC') AS touched_at, key, profile_id, max(is_identity) AS is_identity, max(is_anonymous) AS is_anonymous
FROM {db}.events_by_key
GROUP BY key, profile_id
