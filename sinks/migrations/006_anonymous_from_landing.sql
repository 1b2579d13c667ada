-- The DMP aggregation is fed from the landing table (sinks/views/anonymous_profiles_landing_mv.sql) instead of
-- from events_store: the first view, behind events_store, goes.
DROP VIEW IF EXISTS {db}.anonymous_profiles_mv
