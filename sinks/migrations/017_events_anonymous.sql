-- Whether an event's own identifiers are all anonymous ones (cookie, device or advertising id, no user id): the
-- engine computes it at insert as the column's default. The retention of the raw events of never-identified
-- identifiers (018_retention.sql, sinks/retention.py) reads it, and the worker clears it for the earlier events of
-- a cookie identified later. Rows stored before this migration get it from the default too, and are marked
-- before any TTL reads it (sinks/migrate.py runs the marking before the retention file).
ALTER TABLE {db}.events_store ADD COLUMN IF NOT EXISTS anonymous UInt8 DEFAULT
    user_id = '' AND splitByChar(':', identity_key)[1] IN ('anonymous_id', 'device_id', 'advertising_id', '');
