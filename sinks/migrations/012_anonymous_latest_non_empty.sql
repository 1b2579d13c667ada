-- The DMP fields (device type, OS, browser, country, region) take the latest NON-EMPTY value: an event without a
-- user agent or a location (a server-side track, an app event) no longer wipes what an earlier event said. An
-- empty value is aggregated with the epoch as its time, so any real value outranks it; the store's column types
-- (argMax states) stay as they are and rows aggregated before keep their states.
-- The country comes from context.location, else the locale, else context.geo.country: the country of the client
-- IP, stamped by the collector (schemas/enrich.py). The IP itself is never read here.
DROP VIEW IF EXISTS {db}.anonymous_profiles_landing_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.anonymous_profiles_landing_mv TO {db}.anonymous_profiles_store AS
SELECT kv.1 AS id_type, kv.2 AS id_value,
       min(ts) AS first_seen, max(ts) AS last_seen, count() AS events,
       countIf(kind = 'page') AS pages, countIf(kind = 'screen') AS screens,
       sumMap(if(name != '', map(name, toUInt64(1)), CAST(map(), 'Map(String, UInt64)'))) AS event_counts,
       sumMap(if(path != '', map(path, toUInt64(1)), CAST(map(), 'Map(String, UInt64)'))) AS page_counts,
       sumMap(if(category != '', map(category, toUInt64(1)), CAST(map(), 'Map(String, UInt64)'))) AS category_counts,
       argMaxState(c.ua.device_type, if(c.ua.device_type != '', ts, toDateTime64(0, 3, 'UTC'))) AS device_type,
       argMaxState(c.ua.os, if(c.ua.os != '', ts, toDateTime64(0, 3, 'UTC'))) AS os,
       argMaxState(c.ua.browser, if(c.ua.browser != '', ts, toDateTime64(0, 3, 'UTC'))) AS browser,
       argMaxState(country_code, if(country_code != '', ts, toDateTime64(0, 3, 'UTC'))) AS country,
       argMaxState(c.location.region, if(c.location.region != '', ts, toDateTime64(0, 3, 'UTC'))) AS region
FROM
(
    SELECT kind, name, ts, c,
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
        SELECT if(type = '', 'track', type) AS kind,
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
