-- The identifiers an identity change touched, with their new profile.
CREATE MATERIALIZED VIEW {db}.profile_touches_identities_mv TO {db}.profile_touches AS
SELECT DISTINCT now64(6, 'UTC') AS touched_at, concat(id_type, ':', id_value) AS key, profile_id, toUInt8(1) AS is_identity,
       toUInt8(0) AS is_anonymous
FROM {db}.identities_store
