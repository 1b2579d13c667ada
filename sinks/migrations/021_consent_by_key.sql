-- Consent per identifier key and purpose (schemas/consent.py says how choices fold; sinks/views/consent_by_key_mv.sql
-- fills it, profile_consent_of.sql reads it). Kept per key, as the traits are (010): a merge rewrites nothing, the
-- keys of a profile are folded at read through the identities. `choice` is the standing choice of the key under the
-- profile it was stitched with: (granted, event time, explicit), the latest explicit one, a source's default only
-- where the key never chose (argMax over (explicit, event time, message id)). Like every table holding people, it
-- keeps replaced parts 30 s (016): an erasure's purge is bounded.
CREATE TABLE IF NOT EXISTS {db}.consent_by_key
(
    key        String,
    profile_id String,
    purpose    LowCardinality(String),
    choice     AggregateFunction(argMax, Tuple(UInt8, DateTime64(3, 'UTC'), UInt8), Tuple(UInt8, DateTime64(3, 'UTC'), String))
)
ENGINE = AggregatingMergeTree
ORDER BY (key, profile_id, purpose)
SETTINGS old_parts_lifetime = 30
