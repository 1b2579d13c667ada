-- Behaviour per profile (the analysts' view): every profile, folded from the per-key figures (profile_stats_of);
-- exact whatever retries happened.
CREATE VIEW {db}.profile_stats AS
SELECT * FROM {db}.profile_stats_of(keys = [])
