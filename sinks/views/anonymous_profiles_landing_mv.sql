-- history: events_as_landing in place of events_landing
-- The DMP aggregation per cookie and device id, fed from the landing table beside events_store rather than
-- behind it: two views on one table run in parallel threads (the sink sets parallel_view_processing), while a
-- chain would use one core per insert. The context and properties JSON are parsed once per row (JSONExtract
-- into a named Tuple). Placeholder ids (the default blocklist of identity/rules.yaml: "0", all-zero
-- advertising ids, "undefined", ...) never get an anonymous profile: they are shared by unrelated people.
-- Each event counts once however often it is delivered: counts are exact distinct counts (uniqExact states) of
-- a per-event key, the event's identity in events_store (message_id, type, event name, day), so a redelivery
-- in another block (a sink restarted between insert and offset commit, an SDK retry) is not counted twice.
-- The attributes (device type, OS, browser, country, region) take the latest NON-EMPTY value: an empty value
-- is aggregated with the epoch as its time, so any real value outranks it. The country comes from
-- context.location, else the locale, else context.geo.country (the country of the client IP, stamped by the
-- collector: schemas/enrich.py); the IP itself is never read here.
-- Advertising consent (schemas/consent.py): an event without it (an explicit no, or its source's default) adds
-- nothing; an explicit choice is kept as the cookie's standing choice (`advertising`: the latest explicit one
-- outranks every default), so a withdrawal hides the cookie (anonymous_profiles) and the behaviour counted is that
-- of events made with consent. A cookie that never consented has no row.
-- The `history` line above: when this view is created over an empty store, the store is filled from the
-- stored events through this same SELECT (the aggregation is idempotent, so an event landing meanwhile is
-- not counted twice).
CREATE MATERIALIZED VIEW {db}.anonymous_profiles_landing_mv TO {db}.anonymous_profiles_store AS
SELECT kv.1 AS id_type, kv.2 AS id_value,
       min(ts) AS first_seen, max(ts) AS last_seen, uniqExactIfState(key, ad = 1) AS events,
       uniqExactIfState(key, kind = 'page' AND ad = 1) AS pages,
       uniqExactIfState(key, kind = 'screen' AND ad = 1) AS screens,
       uniqExactMapState(if(name != '' AND ad = 1, map(name, key), CAST(map(), 'Map(String, UInt64)'))) AS event_counts,
       uniqExactMapState(if(path != '' AND ad = 1, map(path, key), CAST(map(), 'Map(String, UInt64)'))) AS page_counts,
       uniqExactMapState(if(category != '' AND ad = 1, map(category, key), CAST(map(), 'Map(String, UInt64)')))
           AS category_counts,
       argMaxState(c.ua.device_type, if(c.ua.device_type != '', ts, toDateTime64(0, 3, 'UTC'))) AS device_type,
       argMaxState(c.ua.os, if(c.ua.os != '', ts, toDateTime64(0, 3, 'UTC'))) AS os,
       argMaxState(c.ua.browser, if(c.ua.browser != '', ts, toDateTime64(0, 3, 'UTC'))) AS browser,
       argMaxState(country_code, if(country_code != '', ts, toDateTime64(0, 3, 'UTC'))) AS country,
       argMaxState(c.location.region, if(c.location.region != '', ts, toDateTime64(0, 3, 'UTC'))) AS region,
       argMaxState(ad, (ad_explicit, ts)) AS advertising
FROM
(
    SELECT kind, name, ts, c, cityHash64(messageId, kind, name, toDate(ts)) AS key,
           if(kind = 'page', coalesce(nullIf(p.path, ''), c.page.path), '') AS path,
           p.category AS category, ad, ad_explicit,
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
        -- the same mapping as events_landing_mv: type, event name and time as stored in events_store
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
               JSONExtract(properties, 'Tuple(path String, category String)') AS p,
               JSONHas(context, 'consent', 'purposes', 'advertising') AS ad_explicit,
               toUInt8(if(ad_explicit, JSONExtractBool(context, 'consent', 'purposes', 'advertising'),
                          JSONExtractBool(context, 'consent', 'defaults', 'advertising'))) AS ad
        FROM {db}.events_landing
        WHERE ad = 1 OR ad_explicit = 1
    )
)
ARRAY JOIN keys AS kv
GROUP BY id_type, id_value
