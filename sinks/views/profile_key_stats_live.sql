-- Behaviour per (identity key, stitched profile), from the deduplicated rows: the one definition of these figures.
CREATE VIEW {db}.profile_key_stats_live AS
SELECT key, profile_id, min(timestamp) AS first_seen, max(timestamp) AS last_seen,
       max((timestamp, message_id)).2 AS last_message, argMax(toString(channel), (timestamp, message_id)) AS last_channel,
       count() AS events, sumMap(map(toString(type), toUInt64(1))) AS events_by_type,
       sumMap(map(toString(channel), toUInt64(1))) AS events_by_channel,
       countIf(type = 'track' AND event = 'Order Completed') AS orders, sum(revenue) AS revenue,
       sumMapIf(map(toString(currency), row.revenue), type = 'track' AND event = 'Order Completed') AS revenue_by_currency,
       arraySort(groupUniqArray(toString(channel))) AS channels
FROM {db}.events_by_key AS row FINAL
WHERE is_identity = 1
GROUP BY key, profile_id
