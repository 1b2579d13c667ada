-- The reading side of the per-key state (sinks/migrations/010_profile_state.sql). Views ending in `_of` take `keys`,
-- the identifier keys a few profiles ever held (callers read them from profile_keys), and read only those keys'
-- rows, by primary key: the keys are a list of constants, so the engine's index analysis sees them. Given no keys
-- (`keys = []`) they cover everyone (`OR empty(keys)` folds to a constant): the analysts' views read them so. Given
-- `['']`, a key none is held under, they read nothing, and each read folds away (`keys != ['']`) before it is planned.
-- The identifiers among the given keys, each with its current profile.
CREATE VIEW {db}.profile_identifiers_of AS
SELECT concat(id_type, ':', id_value) AS key, id_type, id_value, profile_id AS current
FROM {db}.identities_store FINAL
WHERE ((id_type, id_value) IN (SELECT substring(k, 1, position(k, ':') - 1), substring(k, position(k, ':') + 1)
                               FROM (SELECT arrayJoin({keys:Array(String)}) AS k))
       OR empty({keys:Array(String)}))
  AND {keys:Array(String)} != ['']
