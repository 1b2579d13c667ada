-- The events sink inserts the stitched topic's JSON as it is (JSONEachRow) into a Null-engine landing table in
-- the shape of the Kafka records; sinks/views/events_landing_mv.sql maps it into events_store. The engine parses
-- the JSON, so no row is built in Python (README, "Why these settings"). Nested objects arrive as JSON text
-- (input_format_json_read_objects_as_strings), ids given as numbers as text.
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
    traits      String,
    sourceVersion String
)
ENGINE = Null
