-- Exact per-key behaviour of the given keys (or everyone's), each with the profile it counts for now (`owner`): the
-- current profile of the identifier, or, while identities does not hold the key, the profile its events were
-- stitched with. For everyone: the rolled-up totals of the keys nothing touched since the rollup's watermark, and
-- live figures for the others; for a few keys, live figures (a primary-key read of their rows, with fewer reads
-- to plan than the split).
CREATE VIEW {db}.profile_key_stats_of AS
SELECT * EXCEPT version FROM {db}.profile_key_totals FINAL
WHERE empty({keys:Array(String)}) AND key NOT IN (SELECT key FROM {db}.profile_dirty_keys)
UNION ALL
SELECT s.*, if(i.current != '', i.current, s.profile_id) AS owner
FROM
(
    SELECT * FROM {db}.profile_key_stats_live
    WHERE ((empty({keys:Array(String)}) AND key IN (SELECT key FROM {db}.profile_dirty_keys))
           OR key IN {keys:Array(String)})
      AND {keys:Array(String)} != ['']
) AS s
LEFT JOIN
(
    SELECT concat(id_type, ':', id_value) AS key, profile_id AS current FROM {db}.identities_store FINAL
    WHERE ((empty({keys:Array(String)})
            AND (id_type, id_value) IN (SELECT substring(key, 1, position(key, ':') - 1),
                                               substring(key, position(key, ':') + 1) FROM {db}.profile_dirty_keys))
           OR (id_type, id_value) IN (SELECT substring(k, 1, position(k, ':') - 1), substring(k, position(k, ':') + 1)
                                      FROM (SELECT arrayJoin({keys:Array(String)}) AS k)))
      AND {keys:Array(String)} != ['']
) AS i ON s.key = i.key
