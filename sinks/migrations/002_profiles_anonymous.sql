-- Every event with the CURRENT profile of its primary identifier (looked up in identities now), so events
-- that arrived before a merge are found under the surviving profile. `stitched_profile_id` is the profile the
-- event had when it was stitched.
CREATE VIEW IF NOT EXISTS {db}.events_with_profile AS
SELECT e.message_id AS message_id, e.channel AS channel, e.source_id AS source_id, e.type AS type,
       e.event AS event, e.anonymous_id AS anonymous_id, e.user_id AS user_id,
       if(i.profile_id != '', i.profile_id, e.profile_id) AS profile_id, e.profile_id AS stitched_profile_id,
       e.identity_key AS identity_key, e.timestamp AS timestamp, e.received_at AS received_at,
       e.properties AS properties, e.context AS context, e.traits AS traits
FROM {db}.events AS e
LEFT JOIN {db}.identities AS i ON e.identity_key = concat(i.id_type, ':', i.id_value);

-- Traits and consent flags per profile: each key takes the value of the latest event that set it.
CREATE VIEW IF NOT EXISTS {db}.profile_traits AS
SELECT profile_id,
       CAST(mapFromArrays(groupArrayIf(k, kind = 't'), groupArrayIf(v, kind = 't')), 'Map(String, String)') AS traits,
       CAST(mapFromArrays(groupArrayIf(k, kind = 'c'), groupArrayIf(v, kind = 'c')), 'Map(String, String)') AS consent
FROM
(
    SELECT profile_id, kind, k, argMax(v, timestamp) AS v
    FROM
    (
        SELECT profile_id, timestamp, x.1 AS kind, x.2 AS k,
               if(startsWith(x.3, '"'), JSONExtractString(x.3), x.3) AS v
        FROM {db}.events_with_profile
        ARRAY JOIN arrayConcat(
            arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(context, 'traits')),
            arrayMap(p -> ('t', p.1, p.2), JSONExtractKeysAndValuesRaw(traits)),
            arrayMap(p -> ('c', p.1, p.2), JSONExtractKeysAndValuesRaw(context, 'consent', 'categoryPreferences'))
        ) AS x
        WHERE profile_id != ''
    )
    GROUP BY profile_id, kind, k
)
GROUP BY profile_id;

-- Behaviour per profile, computed from the deduplicated events: exact whatever retries happened.
CREATE VIEW IF NOT EXISTS {db}.profile_stats AS
SELECT profile_id,
       min(timestamp) AS first_seen,
       max(timestamp) AS last_seen,
       count() AS events,
       sumMap(map(toString(type), toUInt64(1))) AS events_by_type,
       sumMap(map(toString(channel), toUInt64(1))) AS events_by_channel,
       countIf(type = 'track' AND event = 'Order Completed') AS orders,
       sumIf(JSONExtractFloat(properties, 'revenue'), type = 'track' AND event = 'Order Completed') AS revenue,
       argMax(toString(channel), timestamp) AS last_channel,
       arraySort(groupUniqArray(toString(channel))) AS channels
FROM {db}.events_with_profile
WHERE profile_id != ''
GROUP BY profile_id;

-- The 360-degree view: one row per profile, always current (identities, traits and behaviour are views over
-- the stream's tables, so a merge or a new event shows at once, and nothing is counted twice).
CREATE VIEW IF NOT EXISTS {db}.profiles AS
SELECT ids.profile_id AS profile_id, ids.identifiers AS identifiers, t.traits AS traits, t.consent AS consent,
       s.first_seen AS first_seen, s.last_seen AS last_seen, s.events AS events,
       s.events_by_type AS events_by_type, s.events_by_channel AS events_by_channel, s.orders AS orders,
       s.revenue AS revenue, s.last_channel AS last_channel, s.channels AS channels
FROM
(
    SELECT profile_id, arraySort(groupArray((toString(id_type), id_value))) AS identifiers
    FROM {db}.identities
    GROUP BY profile_id
) AS ids
LEFT JOIN {db}.profile_stats AS s ON s.profile_id = ids.profile_id
LEFT JOIN {db}.profile_traits AS t ON t.profile_id = ids.profile_id;

-- The DMP side: one row per anonymous id and per device id. Only behaviour, device, OS, browser and coarse
-- location are taken from the event: no e-mail, phone, name, user id, traits or IP ever enter this table.
-- Retention by TTL (CDP_ANONYMOUS_TTL_DAYS); the view also hides rows past it before the merge removes them.
CREATE TABLE IF NOT EXISTS {db}.anonymous_profiles_store
(
    id_type         LowCardinality(String),
    id_value        String,
    first_seen      SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen       SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    events          SimpleAggregateFunction(sum, UInt64),
    pages           SimpleAggregateFunction(sum, UInt64),
    screens         SimpleAggregateFunction(sum, UInt64),
    event_counts    SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    page_counts     SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    category_counts SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    device_type     AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    os              AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    browser         AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    country         AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    region          AggregateFunction(argMax, String, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (id_type, id_value)
TTL toDateTime(last_seen) + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.anonymous_profiles_mv TO {db}.anonymous_profiles_store AS
SELECT kv.1 AS id_type, kv.2 AS id_value,
       min(timestamp) AS first_seen, max(timestamp) AS last_seen, count() AS events,
       countIf(type = 'page') AS pages, countIf(type = 'screen') AS screens,
       sumMap(if(event != '', map(event, toUInt64(1)), CAST(map(), 'Map(String, UInt64)'))) AS event_counts,
       sumMap(if(path != '', map(path, toUInt64(1)), CAST(map(), 'Map(String, UInt64)'))) AS page_counts,
       sumMap(if(category != '', map(category, toUInt64(1)), CAST(map(), 'Map(String, UInt64)'))) AS category_counts,
       argMaxState(JSONExtractString(context, 'ua', 'device_type'), timestamp) AS device_type,
       argMaxState(JSONExtractString(context, 'ua', 'os'), timestamp) AS os,
       argMaxState(JSONExtractString(context, 'ua', 'browser'), timestamp) AS browser,
       argMaxState(country_code, timestamp) AS country,
       argMaxState(JSONExtractString(context, 'location', 'region'), timestamp) AS region
FROM
(
    SELECT type, event, timestamp, context,
           if(type = 'page', coalesce(nullIf(JSONExtractString(properties, 'path'), ''),
                                      JSONExtractString(context, 'page', 'path')), '') AS path,
           JSONExtractString(properties, 'category') AS category,
           upper(coalesce(nullIf(JSONExtractString(context, 'location', 'country'), ''),
                          splitByChar('-', replaceAll(JSONExtractString(context, 'locale'), '_', '-'))[2],
                          '')) AS country_code,
           arrayFilter(x -> x.2 != '', [('anonymous_id', anonymous_id),
                                        ('device_id', JSONExtractString(context, 'device', 'id'))]) AS keys
    FROM {db}.events_store
)
ARRAY JOIN keys AS kv
GROUP BY id_type, id_value;

CREATE VIEW IF NOT EXISTS {db}.anonymous_profiles AS
SELECT id_type, id_value, min(first_seen) AS first_seen, max(last_seen) AS last_seen, sum(events) AS events,
       sum(pages) AS pages, sum(screens) AS screens, sumMap(event_counts) AS event_counts,
       sumMap(page_counts) AS page_counts, sumMap(category_counts) AS category_counts,
       argMaxMerge(device_type) AS device_type, argMaxMerge(os) AS os, argMaxMerge(browser) AS browser,
       argMaxMerge(country) AS country, argMaxMerge(region) AS region
FROM {db}.anonymous_profiles_store
GROUP BY id_type, id_value
HAVING last_seen >= now64(3) - INTERVAL {ttl_days} DAY
