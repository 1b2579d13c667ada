-- Traits per profile (the analysts' view; consent: profile_consent): every profile, folded from the per-key latest values
-- through the current profile of each key (profile_traits_of): each name takes the value of the latest event that
-- set it; a trait whose latest value is JSON null is unset (Segment's identify semantics), the text "null" stays.
CREATE VIEW {db}.profile_traits AS
SELECT * FROM {db}.profile_traits_of(keys = [])
