-- One row per group id: its traits (the latest value each key was given by group calls; null unsets), when it
-- was first and last named, and how many profiles it has.
CREATE VIEW {db}.groups AS
SELECT g.group_id AS group_id, t.traits AS traits, g.first_seen AS first_seen, g.last_seen AS last_seen,
       g.members AS members
FROM
(
    SELECT group_id, min(timestamp) AS first_seen, max(timestamp) AS last_seen,
           uniqExactIf(profile_id, profile_id != '') AS members
    FROM {db}.events_with_profile
    WHERE type = 'group' AND group_id != ''
    GROUP BY group_id
) AS g
LEFT JOIN
(
    SELECT group_id, CAST(mapFromArrays(groupArray(k), groupArray(v)), 'Map(String, String)') AS traits
    FROM
    (
        SELECT group_id, k, if(startsWith(raw, '"'), JSONExtractString(raw), raw) AS v
        FROM
        (
            SELECT group_id, x.1 AS k, argMax(x.2, (timestamp, message_id)) AS raw
            FROM {db}.events
            ARRAY JOIN JSONExtractKeysAndValuesRaw(traits) AS x
            WHERE type = 'group' AND group_id != ''
            GROUP BY group_id, k
        )
        WHERE raw != 'null'
    )
    GROUP BY group_id
) AS t ON t.group_id = g.group_id
