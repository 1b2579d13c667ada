-- The events sink inserts the stitched topic's JSON as it is (JSONEachRow) into a Null-engine landing table in
-- the shape of the Kafka records; this view maps it into events_store. The engine parses the JSON, so no row is
-- built in Python (faster than mapping rows in Python: README, "Why these settings"). Nested objects arrive
-- as JSON text (input_format_json_read_objects_as_strings), ids given as numbers as text.
CREATE TABLE IF NOT EXISTS {db}.events_landing
(
    messageId   String,
    channel     String,
    sourceId    String,
    type        String,
    event       String,
    name        String,
    anonymousId String,
    userId      String,
    profileId   String,
    identityKey String,
    timestamp   String,
    receivedAt  String,
    properties  String,
    context     String,
    traits      String
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_landing_mv TO {db}.events_store AS
SELECT messageId AS message_id, channel, sourceId AS source_id, if(type = '', 'track', type) AS type,
       if(type IN ('track', ''), event, if(name != '', name, event)) AS event,
       anonymousId AS anonymous_id, userId AS user_id, profileId AS profile_id, identityKey AS identity_key,
       coalesce(parseDateTime64BestEffortOrNull(timestamp, 3, 'UTC'),
                parseDateTime64BestEffortOrNull(receivedAt, 3, 'UTC'), now64(3, 'UTC')) AS timestamp,
       coalesce(parseDateTime64BestEffortOrNull(receivedAt, 3, 'UTC'), now64(3, 'UTC')) AS received_at,
       if(properties = '', '{}', properties) AS properties, if(context = '', '{}', context) AS context,
       if(traits = '', '{}', traits) AS traits
FROM {db}.events_landing
