-- One row per merged-away profile: its latest merge (a pair recorded both ways shows once, the way it holds
-- now), none for a profile that holds identifiers again (the label came back to it). `merged_at` is when the
-- stitcher merged, `event_time` the time of the event that caused it (`cause`).
CREATE VIEW {db}.merges AS
SELECT from_profile, argMax(i, at) AS into_profile, argMax(c, at) AS cause, max(at) AS merged_at,
       argMax(et, at) AS event_time
FROM
(
    SELECT from_profile, into_profile AS i, cause AS c, merged_at AS at, event_time AS et
    FROM {db}.merges_store
    WHERE from_profile NOT IN (SELECT profile_id FROM {db}.identities)
)
GROUP BY from_profile
