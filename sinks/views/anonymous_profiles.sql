-- The DMP side: one row per anonymous id and per device id. Only behaviour, device, OS, browser and coarse
-- location are taken from the event: no e-mail, phone, name, user id, traits or IP ever enter it. Retention by
-- TTL on the store (CDP_ANONYMOUS_TTL_DAYS); the view also hides rows past it before the merge removes them, and
-- every cookie whose standing advertising choice is not a yes (a withdrawal: sinks/views/anonymous_profiles_landing_mv.sql).
CREATE VIEW {db}.anonymous_profiles AS
SELECT id_type, id_value, min(first_seen) AS first_seen, max(last_seen) AS last_seen,
       uniqExactMerge(events) AS events, uniqExactMerge(pages) AS pages, uniqExactMerge(screens) AS screens,
       uniqExactMapMerge(event_counts) AS event_counts, uniqExactMapMerge(page_counts) AS page_counts,
       uniqExactMapMerge(category_counts) AS category_counts,
       argMaxMerge(device_type) AS device_type, argMaxMerge(os) AS os, argMaxMerge(browser) AS browser,
       argMaxMerge(country) AS country, argMaxMerge(region) AS region
FROM {db}.anonymous_profiles_store
GROUP BY id_type, id_value
HAVING last_seen >= now64(3) - INTERVAL {ttl_days} DAY AND argMaxMerge(advertising) = 1
