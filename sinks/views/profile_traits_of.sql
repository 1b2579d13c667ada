-- Traits of the profiles holding the given keys: per name the latest raw value; a latest JSON null
-- is an unset trait.
CREATE VIEW {db}.profile_traits_of AS
SELECT owner AS profile_id,
       CAST(mapFromArrays(groupArrayIf(name, kind = 't'), groupArrayIf(v, kind = 't')), 'Map(String, String)') AS traits
FROM
(
    SELECT owner, kind, name, if(startsWith(raw, '"'), JSONExtractString(raw), raw) AS v
    FROM {db}.profile_trait_values_of(keys = {keys:Array(String)})
    WHERE owner != '' AND raw != 'null'
)
GROUP BY owner
