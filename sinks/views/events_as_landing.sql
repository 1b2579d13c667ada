-- The stored events in the shape of the landing table (the stitched topic's records): a view fed from the landing
-- table declares it as its history, and the runner fills the view's empty target from it through the view's own
-- SELECT (sinks/migrate.py), so a store rebuilt by a migration gets its past back without a second copy of the
-- aggregation.
CREATE VIEW {db}.events_as_landing AS
SELECT message_id AS messageId, toString(channel) AS channel, source_id AS sourceId, toString(type) AS type,
       event, '' AS name, anonymous_id AS anonymousId, user_id AS userId, profile_id AS profileId,
       identity_key AS identityKey, toString(timestamp) AS timestamp, toString(received_at) AS receivedAt,
       properties, context, traits, '' AS sourceVersion, group_id AS groupId
FROM {db}.events
