-- Every event with the CURRENT profile of its primary identifier (looked up in identities now), so events
-- that arrived before a merge are found under the surviving profile. `stitched_profile_id` is the profile the
-- event had when it was stitched.
CREATE VIEW {db}.events_with_profile AS
SELECT e.message_id AS message_id, e.channel AS channel, e.source_id AS source_id, e.type AS type,
       e.event AS event, e.anonymous_id AS anonymous_id, e.user_id AS user_id,
       if(i.profile_id != '', i.profile_id, e.profile_id) AS profile_id, e.profile_id AS stitched_profile_id,
       e.identity_key AS identity_key, e.timestamp AS timestamp, e.received_at AS received_at,
       e.properties AS properties, e.context AS context, e.traits AS traits, e.group_id AS group_id
FROM {db}.events AS e
LEFT JOIN {db}.identities AS i ON e.identity_key = concat(i.id_type, ':', i.id_value)
