-- Behaviour per profile, computed from the deduplicated events: exact whatever retries happened. Revenue is also
-- kept per currency (properties.currency upper-cased; '' where the event gave none): `revenue` sums them all.
CREATE VIEW {db}.profile_stats AS
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
GROUP BY profile_id
