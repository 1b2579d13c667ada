-- history: events_store in place of events_store
-- Every event again, one row per (member key, message), ordered by key (sinks/migrations/010_profile_state.sql):
-- the event's identity key (profile side) and, for the DMP side, its anonymous id and device id (placeholder ids
-- excluded, as anonymous_profiles does). An event without identity key but with a profile is keyed
-- `profile_id:<id>`, a key identities never holds, so it counts under its stitched profile.
-- The `history` line: created over an empty events_by_key (a store that already holds events), it is filled from
-- events_store through this SELECT; the migration runner creates the views reading events_by_key first, so the
-- fill reaches profile_keys and profile_touches too. Copies of a message collapse (ReplacingMergeTree, read FINAL).
CREATE MATERIALIZED VIEW {db}.events_by_key_mv TO {db}.events_by_key AS
SELECT m.1 AS key, message_id, profile_id, m.2 AS is_identity, m.3 AS is_anonymous, channel, type, event, timestamp,
       if(type = 'track' AND event = 'Order Completed', JSONExtractFloat(properties, 'revenue'), 0) AS revenue,
       upper(JSONExtractString(properties, 'currency')) AS currency,
       properties, ingested_at
FROM
(
    SELECT *, if(identity_key != '', identity_key, if(profile_id != '', concat('profile_id:', profile_id), '')) AS ik,
           arrayMap(x -> if(x.2 = '' OR lower(trimBoth(x.2)) IN ('undefined', 'null', 'none', 'nil', 'nan', 'n/a',
               'unknown', 'anonymous', 'guest', 'distinct_id', 'distinctid', 'id', 'not_authenticated', 'email', 'true',
               'false', '-1') OR match(lower(trimBoth(x.2)), '^[0-]*$|^\\[object .*\\]$'), '', concat(x.1, ':', x.2)),
                    [('anonymous_id', anonymous_id), ('device_id', JSONExtractString(context, 'device', 'id'))]) AS anon
    FROM {db}.events_store
)
ARRAY JOIN arrayFilter(x -> x.1 != '', [(ik, toUInt8(1), toUInt8(has(anon, ik))),
                                        (if(anon[1] NOT IN (ik, ''), anon[1], ''), toUInt8(0), toUInt8(1)),
                                        (if(anon[2] NOT IN (ik, anon[1], ''), anon[2], ''), toUInt8(0), toUInt8(1))]) AS m
