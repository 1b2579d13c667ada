-- The events of the profiles holding the given keys, under the profile each counts for now.
CREATE VIEW {db}.profile_events_of AS
SELECT if(i.current != '', i.current, e.profile_id) AS profile_id, e.message_id AS message_id, e.channel AS channel,
       e.type AS type, e.event AS event, e.timestamp AS timestamp, e.properties AS properties
FROM (SELECT * FROM {db}.events_by_key FINAL WHERE is_identity = 1 AND key IN {keys:Array(String)}) AS e
LEFT JOIN {db}.profile_identifiers_of(keys = {keys:Array(String)}) AS i ON e.key = i.key
