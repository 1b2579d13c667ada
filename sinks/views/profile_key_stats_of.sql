-- Exact per-key behaviour of the given keys (or everyone's), each with the profile it counts for now (`owner`):
-- the rolled-up totals of the keys nothing touched since the rollup's watermark, live figures for the others, with
-- the current profile of the identifier, or, while identities does not hold the key, the profile its events were
-- stitched with.
CREATE VIEW {db}.profile_key_stats_of AS
SELECT * EXCEPT version FROM {db}.profile_key_totals FINAL
WHERE (key IN {keys:Array(String)} OR empty({keys:Array(String)})) AND key NOT IN (SELECT key FROM {db}.profile_dirty_keys)
UNION ALL
SELECT s.*, if(i.current != '', i.current, s.profile_id) AS owner
FROM
(
    SELECT * FROM {db}.profile_key_stats_live
    WHERE (key IN {keys:Array(String)} OR empty({keys:Array(String)})) AND key IN (SELECT key FROM {db}.profile_dirty_keys)
) AS s
LEFT JOIN
(
    SELECT concat(id_type, ':', id_value) AS key, profile_id AS current FROM {db}.identities_store FINAL
    WHERE (id_type, id_value) IN (SELECT substring(key, 1, position(key, ':') - 1), substring(key, position(key, ':') + 1)
                                  FROM {db}.profile_dirty_keys)
) AS i ON s.key = i.key
