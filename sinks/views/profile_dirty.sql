-- What `profiles` folds live, as one tuple (read as a scalar, so it is computed once per query): whether the rollup
-- ever ran (before that, every profile is folded live), the profiles touched since its watermark
-- (profile_dirty_profiles_of), and every key ever under them (`['']`, naming no key, when there are none).
CREATE VIEW {db}.profile_dirty AS
SELECT (rolled, profiles, if(rolled, arrayPushBack(keys, ''), CAST([], 'Array(String)'))) AS dirty
FROM
(
    SELECT (SELECT max(watermark) > toDateTime64(0, 6, 'UTC') FROM {db}.profile_rollup) AS rolled,
           (SELECT groupUniqArray(profile_id) FROM {db}.profile_dirty_profiles_of(
               since = (SELECT if(max(watermark) > toDateTime64(0, 6, 'UTC'), max(watermark),
                                  toDateTime64('2299-12-31', 6, 'UTC')) FROM {db}.profile_rollup),
               until = toDateTime64('2299-12-31', 6, 'UTC'))) AS profiles,
           (SELECT groupUniqArray(key) FROM {db}.profile_keys WHERE profile_id IN (
               SELECT profile_id FROM {db}.profile_dirty_profiles_of(
                   since = (SELECT if(max(watermark) > toDateTime64(0, 6, 'UTC'), max(watermark),
                                      toDateTime64('2299-12-31', 6, 'UTC')) FROM {db}.profile_rollup),
                   until = toDateTime64('2299-12-31', 6, 'UTC')))) AS keys
)
