-- The events sink inserts the stitched topic's JSON as it is (JSONEachRow) into the Null-engine landing table;
-- this view maps each row into events_store. The engine parses the JSON, so no row is built in Python.
-- Which version of an event the store keeps: events_store replaces on ingested_at, so among rows of one
-- messageId the latest wins. A retried SDK event is the same in every copy, so arrival time serves; a pull
-- source can send a new version under the same messageId (an order whose total was corrected) and the sink's
-- writers insert out of order, so such an event carries `sourceVersion`, the time its source changed it (a
-- database commit), and the store keeps the latest by that time, in whatever order the versions arrive.
-- A group call's groupId becomes group_id: the groups and profile_groups views read it.
CREATE MATERIALIZED VIEW {db}.events_landing_mv TO {db}.events_store AS
SELECT messageId AS message_id, channel, sourceId AS source_id, if(type = '', 'track', type) AS type,
       if(type IN ('track', ''), event, if(name != '', name, event)) AS event,
       anonymousId AS anonymous_id, userId AS user_id, profileId AS profile_id, identityKey AS identity_key,
       coalesce(parseDateTime64BestEffortOrNull(timestamp, 3, 'UTC'),
                parseDateTime64BestEffortOrNull(receivedAt, 3, 'UTC'), now64(3, 'UTC')) AS timestamp,
       coalesce(parseDateTime64BestEffortOrNull(receivedAt, 3, 'UTC'), now64(3, 'UTC')) AS received_at,
       if(properties = '', '{}', properties) AS properties, if(context = '', '{}', context) AS context,
       if(traits = '', '{}', traits) AS traits,
       coalesce(parseDateTime64BestEffortOrNull(sourceVersion, 3, 'UTC'), now64(3, 'UTC')) AS ingested_at,
       groupId AS group_id
FROM {db}.events_landing
