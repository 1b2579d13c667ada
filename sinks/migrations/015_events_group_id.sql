-- Groups (accounts, households) are their own entity: a `group` call's groupId is kept with the event, so its
-- traits are the group's (the `groups` view), never the person's, and its person is linked to the group (the
-- `profile_groups` view).
ALTER TABLE {db}.events_landing ADD COLUMN IF NOT EXISTS groupId String;

ALTER TABLE {db}.events_store ADD COLUMN IF NOT EXISTS group_id String;

-- VIEWS (to move to sinks/views/)
DROP VIEW IF EXISTS {db}.events_landing_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_landing_mv TO {db}.events_store AS
SELECT messageId AS message_id, channel, sourceId AS source_id, if(type = '', 'track', type) AS type,
       if(type IN ('track', ''), event, if(name != '', name, event)) AS event,
       anonymousId AS anonymous_id, userId AS user_id, profileId AS profile_id, identityKey AS identity_key,
       coalesce(parseDateTime64BestEffortOrNull(timestamp, 3, 'UTC'),
                parseDateTime64BestEffortOrNull(receivedAt, 3, 'UTC'), now64(3, 'UTC')) AS timestamp,
       coalesce(parseDateTime64BestEffortOrNull(receivedAt, 3, 'UTC'), now64(3, 'UTC')) AS received_at,
       if(properties = '', '{}', properties) AS properties, if(context = '', '{}', context) AS context,
       if(traits = '', '{}', traits) AS traits,
       coalesce(parseDateTime64BestEffortOrNull(sourceVersion, 3, 'UTC'), now64(3, 'UTC')) AS ingested_at,
       groupId AS group_id
FROM {db}.events_landing;

CREATE OR REPLACE VIEW {db}.events AS
SELECT message_id, channel, source_id, type, event, anonymous_id, user_id, profile_id, identity_key,
       timestamp, received_at, properties, context, traits, group_id
FROM {db}.events_store FINAL;

CREATE OR REPLACE VIEW {db}.events_with_profile AS
SELECT e.message_id AS message_id, e.channel AS channel, e.source_id AS source_id, e.type AS type,
       e.event AS event, e.anonymous_id AS anonymous_id, e.user_id AS user_id,
       if(i.profile_id != '', i.profile_id, e.profile_id) AS profile_id, e.profile_id AS stitched_profile_id,
       e.identity_key AS identity_key, e.timestamp AS timestamp, e.received_at AS received_at,
       e.properties AS properties, e.context AS context, e.traits AS traits, e.group_id AS group_id
FROM {db}.events AS e
LEFT JOIN {db}.identities AS i ON e.identity_key = concat(i.id_type, ':', i.id_value);

-- A group call's traits are the group's: the person's traits come from the other calls and every context.traits.
CREATE OR REPLACE VIEW {db}.profile_traits AS
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
GROUP BY profile_id;

-- Revenue per currency (properties.currency upper-cased; '' where the event gave none) beside the plain sum.
CREATE OR REPLACE VIEW {db}.profile_stats AS
SELECT profile_id,
       min(timestamp) AS first_seen,
       max(timestamp) AS last_seen,
       count() AS events,
       sumMap(map(toString(type), toUInt64(1))) AS events_by_type,
       sumMap(map(toString(channel), toUInt64(1))) AS events_by_channel,
       countIf(type = 'track' AND event = 'Order Completed') AS orders,
       sumIf(JSONExtractFloat(properties, 'revenue'), type = 'track' AND event = 'Order Completed') AS revenue,
       sumMapIf(map(upper(JSONExtractString(properties, 'currency')), JSONExtractFloat(properties, 'revenue')),
                type = 'track' AND event = 'Order Completed') AS revenue_by_currency,
       argMax(toString(channel), timestamp) AS last_channel,
       arraySort(groupUniqArray(toString(channel))) AS channels
FROM {db}.events_with_profile
WHERE profile_id != ''
GROUP BY profile_id;

CREATE OR REPLACE VIEW {db}.profiles AS
SELECT ids.profile_id AS profile_id, ids.identifiers AS identifiers, t.traits AS traits, t.consent AS consent,
       s.first_seen AS first_seen, s.last_seen AS last_seen, s.events AS events,
       s.events_by_type AS events_by_type, s.events_by_channel AS events_by_channel, s.orders AS orders,
       s.revenue AS revenue, s.revenue_by_currency AS revenue_by_currency, s.last_channel AS last_channel,
       s.channels AS channels
FROM
(
    SELECT profile_id, arraySort(groupArray((toString(id_type), id_value))) AS identifiers
    FROM {db}.identities
    GROUP BY profile_id
) AS ids
LEFT JOIN {db}.profile_stats AS s ON s.profile_id = ids.profile_id
LEFT JOIN {db}.profile_traits AS t ON t.profile_id = ids.profile_id;

-- One row per group id: its traits (the latest value each key was given by group calls; null unsets), when it
-- was first and last named, and how many profiles it has.
CREATE OR REPLACE VIEW {db}.groups AS
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
            SELECT group_id, x.1 AS k, argMax(x.2, timestamp) AS raw
            FROM {db}.events
            ARRAY JOIN JSONExtractKeysAndValuesRaw(traits) AS x
            WHERE type = 'group' AND group_id != ''
            GROUP BY group_id, k
        )
        WHERE raw != 'null'
    )
    GROUP BY group_id
) AS t ON t.group_id = g.group_id;

-- A profile and a group its group calls named (under the profile that holds the caller's identifier now).
CREATE OR REPLACE VIEW {db}.profile_groups AS
SELECT profile_id, group_id, min(timestamp) AS first_seen, max(timestamp) AS last_seen
FROM {db}.events_with_profile
WHERE type = 'group' AND group_id != '' AND profile_id != ''
GROUP BY profile_id, group_id;
