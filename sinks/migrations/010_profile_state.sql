-- Profiles that cost what one profile costs, not what all events cost.
--
-- Every event is kept a second time, ordered by identifier key (events_by_key): reading a profile, its last
-- events or the behaviour of a few audience members is a primary-key range read over that profile's keys.
-- Aggregates are kept per identifier key, never per profile, so a merge rewrites nothing: the keys of a profile
-- are folded at read through the identities (an event counts under the CURRENT profile of its identity key, or,
-- while identities does not know the key yet, under the profile it was stitched with: events_with_profile's rule).
--
-- Exactness under retries and redelivery: an insert-time sum would count a message delivered twice in two blocks
-- twice. So nothing is summed at insert time: events_by_key collapses copies of a message (ReplacingMergeTree) and
-- is read with FINAL; per-key totals are computed from those deduplicated rows by the rollup (sinks/profile_rollup.py)
-- for the keys the sink touched, and a read takes the live figures for every key touched since the last rollup.
-- The rollup also folds the touched profiles' keys into one row per profile (profile_totals); `profiles` reads those
-- rows only, so it is as of the rollup's last step (the profile API reads the per-key state and is exact).
-- Traits are argMax states: a second copy of a message changes nothing, so they are kept at insert time.

-- The views that fill and read these tables are in sinks/views/ (events_by_key_mv, profile_keys_*_mv,
-- profile_touches_*_mv, profile_traits_by_key_mv; profile_*_of, profiles). A store that already
-- holds events gets its per-key state when those views are created: their `history` lines fill the empty tables.
-- The tables that hold people keep replaced parts 30 s, as 016 sets for the others (an erasure's purge is bounded).

-- One row per (member key, message): the event's identity key (profile side) and, for the DMP side, its anonymous
-- id and device id (placeholder ids excluded, as anonymous_profiles does). An event without identity key but with
-- a profile is keyed `profile_id:<id>`, a key identities never holds, so it counts under its stitched profile.
CREATE TABLE IF NOT EXISTS {db}.events_by_key
(
    key          String,
    message_id   String,
    profile_id   String,
    is_identity  UInt8,
    is_anonymous UInt8,
    channel      LowCardinality(String),
    type         LowCardinality(String),
    event        String,
    timestamp    DateTime64(3, 'UTC'),
    revenue      Float64,
    currency     LowCardinality(String),
    properties   String,
    ingested_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY (key, message_id)
SETTINGS old_parts_lifetime = 30;

-- Keys that were ever under a profile, by profile: identifiers (from identities) and the identity keys of the events
-- stitched with it. A key that moved on to another profile stays listed; readers check its current profile.
CREATE TABLE IF NOT EXISTS {db}.profile_keys
(
    profile_id String,
    key        String
)
ENGINE = ReplacingMergeTree
ORDER BY (profile_id, key)
SETTINGS old_parts_lifetime = 30;

-- What changed, and when: one row per key an insert touched (with the profile it names), for the rollup and the
-- audience evaluator. Both process the touches of inserts that have finished (none of them still running), so a
-- slow insert is never skipped. Kept a week: a rollup that was stopped longer rebuilds everything on start.
CREATE TABLE IF NOT EXISTS {db}.profile_touches
(
    touched_at   DateTime64(6, 'UTC'),
    key          String,
    profile_id   String,
    is_identity  UInt8,
    is_anonymous UInt8
)
ENGINE = MergeTree
ORDER BY touched_at
TTL toDateTime(touched_at) + INTERVAL 7 DAY
SETTINGS old_parts_lifetime = 30;

-- Latest value per trait and consent flag, per key: argMax over (event time, message id, source version, position
-- in the event: `traits` after `context.traits`), so ties are settled the same way on every read and a newer
-- version of an event (008) wins over the older one. The raw JSON value is kept: a latest value of JSON null
-- unsets the trait (007), while the text "null" stays.
CREATE TABLE IF NOT EXISTS {db}.profile_traits_by_key
(
    key        String,
    profile_id String,
    kind       LowCardinality(String),
    name       String,
    value      AggregateFunction(argMax, String, Tuple(DateTime64(3, 'UTC'), String, DateTime64(3, 'UTC'), UInt32))
)
ENGINE = AggregatingMergeTree
ORDER BY (key, profile_id, kind, name)
SETTINGS old_parts_lifetime = 30;

-- The rollup's output: profile_key_stats_live as of `version`, with the profile the key counted for then (`owner`).
CREATE TABLE IF NOT EXISTS {db}.profile_key_totals
(
    key String, profile_id String,                                                   -- (identity key, stitched profile)
    first_seen DateTime64(3, 'UTC'), last_seen DateTime64(3, 'UTC'), last_message String, last_channel String,
    events UInt64, events_by_type Map(String, UInt64), events_by_channel Map(String, UInt64),
    orders UInt64, revenue Float64, revenue_by_currency Map(String, Float64), channels Array(String),
    owner String, version DateTime64(6, 'UTC')                          -- the profile it counted for, as of version
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (key, profile_id)
SETTINGS old_parts_lifetime = 30;

-- The rollup's per-profile output: the row of `profiles` (profiles_of) for every profile, as of `version`; a profile
-- that holds no identifier any more is a deleted row (FINAL hides it). The analysts' `profiles` reads these rows,
-- so a question over every profile reads one row each.
CREATE TABLE IF NOT EXISTS {db}.profile_totals
(
    profile_id String, identifiers Array(Tuple(String, String)), traits Map(String, String),
    consent Map(String, String), first_seen DateTime64(3, 'UTC'), last_seen DateTime64(3, 'UTC'), events UInt64,
    events_by_type Map(String, UInt64), events_by_channel Map(String, UInt64), orders UInt64, revenue Float64,
    revenue_by_currency Map(String, Float64), last_channel String, channels Array(String),
    version DateTime64(6, 'UTC'), deleted UInt8
)
ENGINE = ReplacingMergeTree(version, deleted)
ORDER BY profile_id
SETTINGS old_parts_lifetime = 30;

-- How far the rollup got: the keys touched before `watermark` are in profile_key_totals as they are now, and the
-- profiles they touched in profile_totals.
CREATE TABLE IF NOT EXISTS {db}.profile_rollup
(
    watermark DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(watermark)
ORDER BY tuple()
