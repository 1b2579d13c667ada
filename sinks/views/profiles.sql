-- The 360-degree view: one row per profile, always current. The rollup keeps a row per profile (profile_totals,
-- folded from per-identifier-key state: sinks/migrations/010_profile_state.sql); the profiles something touched
-- since its watermark are folded live from their keys (profiles_of), so a merge rewrites nothing, nothing is
-- counted twice, and a question over every profile reads one stored row for each of the others. Before a first
-- rollup, every profile is folded live.
CREATE VIEW {db}.profiles AS
SELECT * EXCEPT (version, deleted) FROM {db}.profile_totals FINAL
WHERE (SELECT max(watermark) > toDateTime64(0, 6, 'UTC') FROM {db}.profile_rollup)
  AND profile_id NOT IN (SELECT profile_id FROM {db}.profile_dirty_profiles_of(
      since = (SELECT max(watermark) FROM {db}.profile_rollup), until = toDateTime64('2299-12-31', 6, 'UTC')))
UNION ALL
SELECT * FROM {db}.profiles_of(keys = (
    SELECT if(max(watermark) > toDateTime64(0, 6, 'UTC'), arrayPushBack((
        SELECT groupUniqArray(key) FROM {db}.profile_keys WHERE profile_id IN (
            SELECT profile_id FROM {db}.profile_dirty_profiles_of(
                since = (SELECT max(watermark) FROM {db}.profile_rollup), until = toDateTime64('2299-12-31', 6, 'UTC')))),
        ''), [])
    FROM {db}.profile_rollup))
WHERE (SELECT max(watermark) = toDateTime64(0, 6, 'UTC') FROM {db}.profile_rollup)
   OR profile_id IN (SELECT profile_id FROM {db}.profile_dirty_profiles_of(
      since = (SELECT max(watermark) FROM {db}.profile_rollup), until = toDateTime64('2299-12-31', 6, 'UTC')))
