-- The 360-degree view: one row per profile, always current. The rollup keeps a row per profile (profile_totals,
-- folded from per-identifier-key state: sinks/migrations/010_profile_state.sql); the profiles something touched
-- since its watermark are folded live from their keys (profiles_of, profile_dirty), so a merge rewrites nothing,
-- nothing is counted twice, and a question over every profile reads one stored row for each of the others.
CREATE VIEW {db}.profiles AS
SELECT * EXCEPT (version, deleted) FROM {db}.profile_totals FINAL
WHERE (SELECT dirty FROM {db}.profile_dirty).1 AND profile_id NOT IN (SELECT dirty FROM {db}.profile_dirty).2
UNION ALL
SELECT * FROM {db}.profiles_of(keys = (SELECT dirty FROM {db}.profile_dirty).3)
WHERE NOT (SELECT dirty FROM {db}.profile_dirty).1 OR profile_id IN (SELECT dirty FROM {db}.profile_dirty).2
