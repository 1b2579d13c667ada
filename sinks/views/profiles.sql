-- The 360-degree view: one row per profile, always current (identities, traits and behaviour are views over
-- the stream's tables, so a merge or a new event shows at once, and nothing is counted twice).
CREATE VIEW {db}.profiles AS
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
LEFT JOIN {db}.profile_traits AS t ON t.profile_id = ids.profile_id
