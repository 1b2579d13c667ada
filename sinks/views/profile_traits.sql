-- Traits and consent flags per profile: each key takes the value of the latest event that set it. Profiles
-- are resolved only for the events that carry traits or consent (identify calls, events with context.traits):
-- most events carry neither, and the unified `profiles` view pays for this view on every query.
-- A trait whose latest value is JSON null is unset (Segment's identify semantics): it leaves the profile. Pull
-- sources send null for a column cleared or a row deleted. The null is recognised on the raw JSON value, so a
-- trait holding the text "null" stays.
-- A group call's traits are the group's (the `groups` view), not the person's; its context.traits are the person's.
CREATE VIEW {db}.profile_traits AS
SELECT profile_id,
       CAST(mapFromArrays(groupArrayIf(k, kind = 't'), groupArrayIf(v, kind = 't')), 'Map(String, String)') AS traits,
       CAST(mapFromArrays(groupArrayIf(k, kind = 'c'), groupArrayIf(v, kind = 'c')), 'Map(String, String)') AS consent
FROM
(
    SELECT profile_id, kind, k, if(startsWith(raw, '"'), JSONExtractString(raw), raw) AS v
    FROM
    (
        SELECT profile_id, kind, k, argMax(raw_v, timestamp) AS raw
        FROM
        (
            SELECT if(i.profile_id != '', i.profile_id, e.profile_id) AS profile_id, e.timestamp AS timestamp,
                   x.1 AS kind, x.2 AS k, x.3 AS raw_v
            FROM
            (
                SELECT profile_id, identity_key, timestamp, context, if(type = 'group', '{}', traits) AS traits
                FROM {db}.events
                WHERE traits != '{}' OR position(context, '"traits"') > 0 OR position(context, '"consent"') > 0
            ) AS e
            LEFT JOIN {db}.identities AS i ON e.identity_key = concat(i.id_type, ':', i.id_value)
            ARRAY JOIN arrayConcat(
                arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(e.context, 'traits')),
                arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(e.traits)),
                arrayMap(p -> ('c', p.1, p.2),
                         JSONExtractKeysAndValuesRaw(e.context, 'consent', 'categoryPreferences'))
            ) AS x
            WHERE profile_id != ''
        )
        GROUP BY profile_id, kind, k
    )
    WHERE raw != 'null'
)
GROUP BY profile_id
