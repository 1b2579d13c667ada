-- Events, exactly once visible: events_store may briefly hold a redelivered row twice (ReplacingMergeTree on
-- message_id inside the sort key); FINAL collapses the copies, so analysts never see an event twice.
CREATE VIEW {db}.events AS
SELECT message_id, channel, source_id, type, event, anonymous_id, user_id, profile_id, identity_key,
       timestamp, received_at, properties, context, traits, group_id
FROM {db}.events_store FINAL
