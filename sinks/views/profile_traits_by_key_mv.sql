-- history: events_store in place of events_store
-- Latest value per trait, per key (sinks/migrations/010_profile_state.sql says how ties are
-- settled; consent has its own state: consent_by_key_mv). argMax states: a second copy of a message changes nothing, so a fill from history is idempotent.
CREATE MATERIALIZED VIEW {db}.profile_traits_by_key_mv TO {db}.profile_traits_by_key AS
SELECT key, profile_id, x.1 AS kind, x.2 AS name,
       argMaxState(x.3, (timestamp, message_id, ingested_at, n)) AS value
FROM
(
    SELECT if(identity_key != '', identity_key, concat('profile_id:', profile_id)) AS key, profile_id, message_id,
           timestamp, ingested_at, arrayConcat(
               arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(context, 'traits')),
               arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(if(type = 'group', '{}', traits)))
           ) AS pairs
    FROM {db}.events_store
    WHERE (identity_key != '' OR profile_id != '')
      AND (traits != '{}' OR position(context, '"traits"') > 0)
)
ARRAY JOIN pairs AS x, arrayEnumerate(pairs) AS n
GROUP BY key, profile_id, kind, name
