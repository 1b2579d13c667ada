-- A bound on the physical purge of an erasure (POST /v1/regulations, sinks/erasure.py): the mutation rewrites the
-- parts that held the person, and the parts it replaced stay on disk, inactive, for old_parts_lifetime (480 s by
-- default) before the engine's cleanup (every 30 s or so) removes them. Every table that holds people keeps them
-- for 30 s: the values are gone from the data folder within about a minute of the regulation's end. Inactive
-- parts only guard against a crash between a merge and an fsync, which the stream re-delivers anyway.
ALTER TABLE {db}.events_store MODIFY SETTING old_parts_lifetime = 30;
ALTER TABLE {db}.identities_store MODIFY SETTING old_parts_lifetime = 30;
ALTER TABLE {db}.merges_store MODIFY SETTING old_parts_lifetime = 30;
ALTER TABLE {db}.identity_refusals MODIFY SETTING old_parts_lifetime = 30;
ALTER TABLE {db}.anonymous_profiles_store MODIFY SETTING old_parts_lifetime = 30;
ALTER TABLE {db}.audience_members MODIFY SETTING old_parts_lifetime = 30
