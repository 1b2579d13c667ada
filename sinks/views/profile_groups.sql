-- A profile and a group its group calls named (under the profile that holds the caller's identifier now).
CREATE VIEW {db}.profile_groups AS
SELECT profile_id, group_id, min(timestamp) AS first_seen, max(timestamp) AS last_seen
FROM {db}.events_with_profile
WHERE type = 'group' AND group_id != '' AND profile_id != ''
GROUP BY profile_id, group_id
