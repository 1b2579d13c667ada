-- The 360-degree view: one row per profile, always current. Identities, traits and behaviour are folded at read
-- from per-identifier-key state (profiles_of over every key), so a merge rewrites nothing and nothing is counted
-- twice.
CREATE VIEW {db}.profiles AS
SELECT * FROM {db}.profiles_of(keys = [])
