-- Which version of an event the store keeps. events_store is a ReplacingMergeTree on ingested_at: among rows of
-- one messageId (type, event and day) the latest wins. For a retried SDK event every copy is the same, so arrival
-- time serves. A pull source can send a new version of an event under the same messageId (an order whose total
-- was corrected), and the sink's writers insert batches out of order, so arrival time could keep the older one:
-- such an event carries `sourceVersion`, the time its source changed it (a database commit), and the store keeps
-- the latest by that time, in whatever order the versions arrive.
ALTER TABLE {db}.events_landing ADD COLUMN IF NOT EXISTS sourceVersion String;

DROP VIEW IF EXISTS {db}.events_landing_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_landing_mv TO {db}.events_store AS
SELECT messageId AS message_id, channel, sourceId AS source_id, if(type = '', 'track', type) AS type,
       if(type IN ('track', ''), event, if(name != '', name, event)) AS event,
       anonymousId AS anonymous_id, userId AS user_id, profileId AS profile_id, identityKey AS identity_key,
       coalesce(parseDateTime64BestEffortOrNull(timestamp, 3, 'UTC'),
                parseDateTime64BestEffortOrNull(receivedAt, 3, 'UTC'), now64(3, 'UTC')) AS timestamp,
       coalesce(parseDateTime64BestEffortOrNull(receivedAt, 3, 'UTC'), now64(3, 'UTC')) AS received_at,
       if(properties = '', '{}', properties) AS properties, if(context = '', '{}', context) AS context,
       if(traits = '', '{}', traits) AS traits,
       coalesce(parseDateTime64BestEffortOrNull(sourceVersion, 3, 'UTC'), now64(3, 'UTC')) AS ingested_at
FROM {db}.events_landing
