-- Traits and consent per key with the profile they count for now (the given keys', or everyone's): per
-- name the latest raw value; a latest JSON null is an unset trait.
CREATE VIEW {db}.profile_trait_values_of AS
SELECT if(i.current != '', i.current, t.profile_id) AS owner, t.kind AS kind, t.name AS name, argMaxMerge(t.value) AS raw
FROM
(
    SELECT * FROM {db}.profile_traits_by_key
    WHERE (key IN {keys:Array(String)} OR empty({keys:Array(String)})) AND {keys:Array(String)} != ['']
) AS t
LEFT JOIN {db}.profile_identifiers_of(keys = {keys:Array(String)}) AS i ON t.key = i.key
GROUP BY owner, kind, name
