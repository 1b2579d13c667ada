-- The profiles whose row in profile_totals may be behind for what was touched between `since` and `until`: the
-- profiles the touches name (an event's stitched profile, an identifier's new profile, both sides of a merge), and,
-- for every identity key touched, each profile it counted for (its rolled-up owners, every profile identities ever
-- gave it), so a key that moved is taken from its old profile as well as added to its new one.
CREATE VIEW {db}.profile_dirty_profiles_of AS
SELECT DISTINCT profile_id FROM
(
    SELECT profile_id FROM {db}.profile_touches
    WHERE (is_identity = 1 OR key = '')
      AND touched_at >= {since:DateTime64(6, 'UTC')} AND touched_at < {until:DateTime64(6, 'UTC')}
    UNION ALL
    SELECT arrayJoin([profile_id, owner]) FROM {db}.profile_key_totals
    WHERE key IN (SELECT key FROM {db}.profile_touches
                  WHERE is_identity = 1 AND touched_at >= {since:DateTime64(6, 'UTC')}
                    AND touched_at < {until:DateTime64(6, 'UTC')})
    UNION ALL
    SELECT profile_id FROM {db}.identities_store
    WHERE (id_type, id_value) IN (SELECT substring(key, 1, position(key, ':') - 1), substring(key, position(key, ':') + 1)
                                  FROM {db}.profile_touches
                                  WHERE is_identity = 1 AND touched_at >= {since:DateTime64(6, 'UTC')}
                                    AND touched_at < {until:DateTime64(6, 'UTC')})
)
WHERE profile_id != ''
