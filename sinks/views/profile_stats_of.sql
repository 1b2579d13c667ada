-- Behaviour per profile, folded over its keys (the given keys' profiles, or everyone's below).
CREATE VIEW {db}.profile_stats_of AS
SELECT owner AS profile_id, min(first_seen) AS first_seen, max(last_seen) AS last_seen, sum(events) AS events,
       sumMap(events_by_type) AS events_by_type, sumMap(events_by_channel) AS events_by_channel,
       sum(orders) AS orders, sum(revenue) AS revenue,
       sumMap(revenue_by_currency) AS revenue_by_currency, argMax(last_channel, latest) AS last_channel,
       arraySort(groupUniqArrayArray(channels)) AS channels
FROM (SELECT *, (last_seen, last_message) AS latest FROM {db}.profile_key_stats_of(keys = {keys:Array(String)}))
WHERE owner != ''
GROUP BY owner
