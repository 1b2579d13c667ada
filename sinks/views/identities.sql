-- Identifier -> current profile: the last version of each identifier (a node's profile only changes towards the
-- surviving profile, and the version grows with every change).
CREATE VIEW {db}.identities AS
SELECT id_type, id_value, profile_id, first_seen, updated_at
FROM {db}.identities_store FINAL
