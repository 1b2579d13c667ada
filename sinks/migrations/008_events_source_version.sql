-- `sourceVersion`: the time a pull source changed an event (a database commit), so the store keeps the latest
-- version of an event whatever order its versions arrive in (sinks/views/events_landing_mv.sql). Stores made
-- before it get the column here; 005 makes it for new ones.
ALTER TABLE {db}.events_landing ADD COLUMN IF NOT EXISTS sourceVersion String
