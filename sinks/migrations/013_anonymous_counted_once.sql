-- The DMP counts each event once however often it is delivered. A block's deduplication token names its exact
-- offsets, so it only drops a retry of the same block; an event can also come back in another block (a sink
-- killed between its insert and its offset commit reads again from the committed offsets and cuts its blocks
-- elsewhere; an SDK that lost an answer sends the same event again, a second record). events_store collapses
-- such copies by message_id; the per-block sums of 006 counted them twice. Counts are now exact distinct counts
-- (uniqExact states) of a per-event key: the event's identity in events_store (message_id, type, event name,
-- day), so a cookie's counts are those of its rows in the `events` view. First/last seen and the argMax
-- attributes were idempotent already; they keep 012's latest non-empty value and the country of the client IP.
-- The store is rebuilt from the deduplicated events (re-runnable: a rerun drops and rebuilds it again).
DROP VIEW IF EXISTS {db}.anonymous_profiles_landing_mv;

DROP TABLE IF EXISTS {db}.anonymous_profiles_store;

CREATE TABLE IF NOT EXISTS {db}.anonymous_profiles_store
(
    id_type         LowCardinality(String),
    id_value        String,
    first_seen      SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen       SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    events          AggregateFunction(uniqExact, UInt64),
    pages           AggregateFunction(uniqExact, UInt64),
    screens         AggregateFunction(uniqExact, UInt64),
    event_counts    AggregateFunction(uniqExactMap, Map(String, UInt64)),
    page_counts     AggregateFunction(uniqExactMap, Map(String, UInt64)),
    category_counts AggregateFunction(uniqExactMap, Map(String, UInt64)),
    device_type     AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    os              AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    browser         AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    country         AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    region          AggregateFunction(argMax, String, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (id_type, id_value)
TTL toDateTime(last_seen) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.anonymous_profiles_landing_mv TO {db}.anonymous_profiles_store AS
SELECT kv.1 AS id_type, kv.2 AS id_value,
       min(ts) AS first_seen, max(ts) AS last_seen, uniqExactState(key) AS events,
       uniqExactIfState(key, kind = 'page') AS pages, uniqExactIfState(key, kind = 'screen') AS screens,
       uniqExactMapState(if(name != '', map(name, key), CAST(map(), 'Map(String, UInt64)'))) AS event_counts,
       uniqExactMapState(if(path != '', map(path, key), CAST(map(), 'Map(String, UInt64)'))) AS page_counts,
       uniqExactMapState(if(category != '', map(category, key), CAST(map(), 'Map(String, UInt64)')))
           AS category_counts,
       argMaxState(c.ua.device_type, if(c.ua.device_type != '', ts, toDateTime64(0, 3, 'UTC'))) AS device_type,
       argMaxState(c.ua.os, if(c.ua.os != '', ts, toDateTime64(0, 3, 'UTC'))) AS os,
       argMaxState(c.ua.browser, if(c.ua.browser != '', ts, toDateTime64(0, 3, 'UTC'))) AS browser,
       argMaxState(country_code, if(country_code != '', ts, toDateTime64(0, 3, 'UTC'))) AS country,
       argMaxState(c.location.region, if(c.location.region != '', ts, toDateTime64(0, 3, 'UTC'))) AS region
FROM
(
    SELECT kind, name, ts, c, cityHash64(messageId, kind, name, toDate(ts)) AS key,
           if(kind = 'page', coalesce(nullIf(p.path, ''), c.page.path), '') AS path,
           p.category AS category,
           upper(coalesce(nullIf(c.location.country, ''),
                          nullIf(splitByChar('-', replaceAll(c.locale, '_', '-'))[2], ''),
                          c.geo.country)) AS country_code,
           arrayFilter(x -> x.2 != ''
                            AND lower(trimBoth(x.2)) NOT IN ('undefined', 'null', 'none', 'nil', 'nan', 'n/a',
                                'unknown', 'anonymous', 'guest', 'distinct_id', 'distinctid', 'id',
                                'not_authenticated', 'email', 'true', 'false', '-1')
                            AND NOT match(lower(trimBoth(x.2)), '^[0-]*$|^\\[object .*\\]$'),
                       [('anonymous_id', anonymousId), ('device_id', c.device.id)]) AS keys
    FROM
    (
        -- the same mapping as events_landing_mv (005): type, event name and time as stored in events_store
        SELECT messageId,
               if(type = '', 'track', type) AS kind,
               if(type IN ('track', ''), event, if(name != '', name, event)) AS name,
               coalesce(parseDateTime64BestEffortOrNull(timestamp, 3, 'UTC'),
                        parseDateTime64BestEffortOrNull(receivedAt, 3, 'UTC'), now64(3, 'UTC')) AS ts,
               anonymousId,
               JSONExtract(context, 'Tuple(ua Tuple(device_type String, os String, browser String),
                                          location Tuple(country String, region String), locale String,
                                          geo Tuple(country String),
                                          device Tuple(id String), page Tuple(path String))') AS c,
               JSONExtract(properties, 'Tuple(path String, category String)') AS p
        FROM {db}.events_landing
    )
)
ARRAY JOIN keys AS kv
GROUP BY id_type, id_value;

-- The history: the events view's rows in the landing table's shape, through the same aggregation.
INSERT INTO {db}.anonymous_profiles_store
SELECT kv.1 AS id_type, kv.2 AS id_value,
       min(ts) AS first_seen, max(ts) AS last_seen, uniqExactState(key) AS events,
       uniqExactIfState(key, kind = 'page') AS pages, uniqExactIfState(key, kind = 'screen') AS screens,
       uniqExactMapState(if(name != '', map(name, key), CAST(map(), 'Map(String, UInt64)'))) AS event_counts,
       uniqExactMapState(if(path != '', map(path, key), CAST(map(), 'Map(String, UInt64)'))) AS page_counts,
       uniqExactMapState(if(category != '', map(category, key), CAST(map(), 'Map(String, UInt64)')))
           AS category_counts,
       argMaxState(c.ua.device_type, if(c.ua.device_type != '', ts, toDateTime64(0, 3, 'UTC'))) AS device_type,
       argMaxState(c.ua.os, if(c.ua.os != '', ts, toDateTime64(0, 3, 'UTC'))) AS os,
       argMaxState(c.ua.browser, if(c.ua.browser != '', ts, toDateTime64(0, 3, 'UTC'))) AS browser,
       argMaxState(country_code, if(country_code != '', ts, toDateTime64(0, 3, 'UTC'))) AS country,
       argMaxState(c.location.region, if(c.location.region != '', ts, toDateTime64(0, 3, 'UTC'))) AS region
FROM
(
    SELECT kind, name, ts, c, cityHash64(message_id, kind, name, toDate(ts)) AS key,
           if(kind = 'page', coalesce(nullIf(p.path, ''), c.page.path), '') AS path,
           p.category AS category,
           upper(coalesce(nullIf(c.location.country, ''),
                          nullIf(splitByChar('-', replaceAll(c.locale, '_', '-'))[2], ''),
                          c.geo.country)) AS country_code,
           arrayFilter(x -> x.2 != ''
                            AND lower(trimBoth(x.2)) NOT IN ('undefined', 'null', 'none', 'nil', 'nan', 'n/a',
                                'unknown', 'anonymous', 'guest', 'distinct_id', 'distinctid', 'id',
                                'not_authenticated', 'email', 'true', 'false', '-1')
                            AND NOT match(lower(trimBoth(x.2)), '^[0-]*$|^\\[object .*\\]$'),
                       [('anonymous_id', anonymous_id), ('device_id', c.device.id)]) AS keys
    FROM
    (
        SELECT message_id, toString(type) AS kind, event AS name, timestamp AS ts, anonymous_id,
               JSONExtract(context, 'Tuple(ua Tuple(device_type String, os String, browser String),
                                          location Tuple(country String, region String), locale String,
                                          geo Tuple(country String),
                                          device Tuple(id String), page Tuple(path String))') AS c,
               JSONExtract(properties, 'Tuple(path String, category String)') AS p
        FROM {db}.events
    )
)
ARRAY JOIN keys AS kv
GROUP BY id_type, id_value;

CREATE OR REPLACE VIEW {db}.anonymous_profiles AS
SELECT id_type, id_value, min(first_seen) AS first_seen, max(last_seen) AS last_seen,
       uniqExactMerge(events) AS events, uniqExactMerge(pages) AS pages, uniqExactMerge(screens) AS screens,
       uniqExactMapMerge(event_counts) AS event_counts, uniqExactMapMerge(page_counts) AS page_counts,
       uniqExactMapMerge(category_counts) AS category_counts,
       argMaxMerge(device_type) AS device_type, argMaxMerge(os) AS os, argMaxMerge(browser) AS browser,
       argMaxMerge(country) AS country, argMaxMerge(region) AS region
FROM {db}.anonymous_profiles_store
GROUP BY id_type, id_value
HAVING last_seen >= now64(3) - INTERVAL {ttl_days} DAY
