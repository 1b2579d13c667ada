-- Both profiles of a merge (no key: the evaluator re-checks the profiles).
CREATE MATERIALIZED VIEW {db}.profile_touches_merges_mv TO {db}.profile_touches AS
SELECT DISTINCT now64(6, 'UTC') AS touched_at, '' AS key, p AS profile_id, toUInt8(0) AS is_identity, toUInt8(0) AS is_anonymous
FROM {db}.merges_store
ARRAY JOIN [from_profile, into_profile] AS p
