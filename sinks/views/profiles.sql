-- The 360-degree view: one row per profile, as of the profile rollup's last step (sinks/profile_rollup.py, every
-- CDP_PROFILE_ROLLUP_S): the rollup folds the per-identifier-key state (sinks/migrations/010_profile_state.sql) of
-- every profile new data touched into one stored row (profile_totals), so a merge rewrites nothing, nothing is
-- counted twice, and a question over every profile reads one row per profile. What arrived since the rollup's last
-- step shows at its next one; `GET /v1/profiles` reads the per-key state and is exact at any moment.
CREATE VIEW {db}.profiles AS
SELECT * EXCEPT (version, deleted) FROM {db}.profile_totals FINAL
