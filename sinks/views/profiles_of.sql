-- The unified profile of the given keys' profiles: one row per profile that holds one of them.
CREATE VIEW {db}.profiles_of AS
SELECT ids.profile_id AS profile_id, ids.identifiers AS identifiers, t.traits AS traits, c.consent AS consent,
       s.first_seen AS first_seen, s.last_seen AS last_seen, s.events AS events,
       s.events_by_type AS events_by_type, s.events_by_channel AS events_by_channel, s.orders AS orders,
       s.revenue AS revenue, s.revenue_by_currency AS revenue_by_currency, s.last_channel AS last_channel,
       s.channels AS channels
FROM
(
    SELECT current AS profile_id, arraySort(groupArray((toString(id_type), id_value))) AS identifiers
    FROM {db}.profile_identifiers_of(keys = {keys:Array(String)})
    GROUP BY current
) AS ids
LEFT JOIN {db}.profile_stats_of(keys = {keys:Array(String)}) AS s ON s.profile_id = ids.profile_id
LEFT JOIN {db}.profile_traits_of(keys = {keys:Array(String)}) AS t ON t.profile_id = ids.profile_id
LEFT JOIN
(
    SELECT profile_id, CAST(mapFromArrays(groupArray(purpose), groupArray(if(granted = 1, 'true', 'false'))),
                            'Map(String, String)') AS consent
    FROM {db}.profile_consent_of(keys = {keys:Array(String)})
    GROUP BY profile_id
) AS c ON c.profile_id = ids.profile_id
