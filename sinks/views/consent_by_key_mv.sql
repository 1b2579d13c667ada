-- history: events_store in place of events_store
-- Consent per identifier key and purpose (sinks/migrations/021_consent_by_key.sql): the purposes the collector
-- stamped on the event (`context.consent.purposes`, explicit) or its source's default (`context.consent.defaults`).
-- argMax states: a second copy of a message changes nothing, so a fill from history is idempotent.
CREATE MATERIALIZED VIEW {db}.consent_by_key_mv TO {db}.consent_by_key AS
SELECT key, profile_id, c.1 AS purpose, argMaxState((c.2, timestamp, c.3), (c.3, timestamp, message_id)) AS choice
FROM
(
    SELECT if(identity_key != '', identity_key, concat('profile_id:', profile_id)) AS key, profile_id, message_id,
           timestamp, arrayConcat(
               arrayMap(p -> (p.1, toUInt8(p.2), toUInt8(1)), JSONExtractKeysAndValues(context, 'consent', 'purposes', 'Bool')),
               arrayMap(p -> (p.1, toUInt8(p.2), toUInt8(0)), JSONExtractKeysAndValues(context, 'consent', 'defaults', 'Bool'))
           ) AS choices
    FROM {db}.events_store
    WHERE (identity_key != '' OR profile_id != '') AND position(context, '"consent"') > 0
)
ARRAY JOIN choices AS c
GROUP BY key, profile_id, purpose
