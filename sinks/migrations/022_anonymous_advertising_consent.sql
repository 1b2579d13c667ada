-- The DMP side answers for a cookie (or device id) only with advertising consent: its standing advertising choice is
-- kept with its profile row, (granted, event time) by (explicit, event time), so a later explicit choice outranks
-- every default. sinks/views/anonymous_profiles*.sql fill and read it. Rows stored before this column have no choice,
-- which reads as not granted: under the default (advertising denied without a consent object) such a cookie never
-- consented.
ALTER TABLE {db}.anonymous_profiles_store ADD COLUMN IF NOT EXISTS advertising
    AggregateFunction(argMax, UInt8, Tuple(UInt8, DateTime64(3, 'UTC')))
