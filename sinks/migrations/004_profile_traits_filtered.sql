-- Traits per profile, resolving profiles only for the events that carry traits or consent (identify calls,
-- events with context.traits): most events carry neither, and the unified `profiles` view pays for this
-- view on every query.
CREATE OR REPLACE VIEW {db}.profile_traits AS
SELECT profile_id,
       CAST(mapFromArrays(groupArrayIf(k, kind = 't'), groupArrayIf(v, kind = 't')), 'Map(String, String)') AS traits,
       CAST(mapFromArrays(groupArrayIf(k, kind = 'c'), groupArrayIf(v, kind = 'c')), 'Map(String, String)') AS consent
FROM
(
    SELECT profile_id, kind, k, argMax(v, timestamp) AS v
    FROM
    (
        SELECT if(i.profile_id != '', i.profile_id, e.profile_id) AS profile_id, e.timestamp AS timestamp,
               x.1 AS kind, x.2 AS k, if(startsWith(x.3, '"'), JSONExtractString(x.3), x.3) AS v
        FROM
        (
            SELECT profile_id, identity_key, timestamp, context, traits
            FROM {db}.events
            WHERE traits != '{}' OR position(context, '"traits"') > 0 OR position(context, '"consent"') > 0
        ) AS e
        LEFT JOIN {db}.identities AS i ON e.identity_key = concat(i.id_type, ':', i.id_value)
        ARRAY JOIN arrayConcat(
            arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(e.context, 'traits')),
            arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(e.traits)),
            arrayMap(p -> ('c', p.1, p.2), JSONExtractKeysAndValuesRaw(e.context, 'consent', 'categoryPreferences'))
        ) AS x
        WHERE profile_id != ''
    )
    GROUP BY profile_id, kind, k
)
GROUP BY profile_id
