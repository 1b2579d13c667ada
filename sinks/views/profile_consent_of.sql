-- Consent per purpose of the profiles holding the given keys (everyone's, for []): schemas/consent.py's
-- profile_consent. Each key's standing choice counts for the key's current profile; explicit choices outrank
-- defaults; within the standing tier the latest choice wins if it was made at or after the profile's latest merge
-- (the latest event time among the merges into it), otherwise the most restrictive one does. Ties go to denial.
CREATE VIEW {db}.profile_consent_of AS
SELECT f.owner AS profile_id, f.purpose AS purpose,
       toUInt8(if(f.explicit = 1,
                  if(f.latest_e.1 >= m.merged_at, f.latest_e.2, f.min_e),
                  if(f.latest_d.1 >= m.merged_at, f.latest_d.2, f.min_d))) AS granted
FROM
(
    SELECT owner, purpose, max(c.3) AS explicit,
           argMaxIf((c.2, c.1), (c.2, 1 - c.1), c.3 = 1) AS latest_e, minIf(c.1, c.3 = 1) AS min_e,
           argMaxIf((c.2, c.1), (c.2, 1 - c.1), c.3 = 0) AS latest_d, minIf(c.1, c.3 = 0) AS min_d
    FROM
    (
        SELECT if(i.current != '', i.current, t.profile_id) AS owner, t.key AS key, t.purpose AS purpose,
               argMaxMerge(t.choice) AS c
        FROM
        (
            SELECT * FROM {db}.consent_by_key
            WHERE (key IN {keys:Array(String)} OR empty({keys:Array(String)})) AND {keys:Array(String)} != ['']
        ) AS t
        LEFT JOIN {db}.profile_identifiers_of(keys = {keys:Array(String)}) AS i ON t.key = i.key
        GROUP BY owner, key, purpose
    )
    WHERE owner != ''
    GROUP BY owner, purpose
) AS f
LEFT JOIN
(
    SELECT into_profile, max(event_time) AS merged_at FROM {db}.merges_store
    WHERE into_profile IN (SELECT current FROM {db}.profile_identifiers_of(keys = {keys:Array(String)}))
    GROUP BY into_profile
) AS m ON m.into_profile = f.owner
