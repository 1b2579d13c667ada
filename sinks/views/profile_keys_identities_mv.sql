-- history: identities_store in place of identities_store
-- The identifiers each profile held. Created over an empty profile_keys, it is filled from the identities stored.
CREATE MATERIALIZED VIEW {db}.profile_keys_identities_mv TO {db}.profile_keys AS
SELECT DISTINCT profile_id, concat(id_type, ':', id_value) AS key FROM {db}.identities_store WHERE profile_id != ''
