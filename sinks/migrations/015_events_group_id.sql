-- Groups (accounts, households) are their own entity: a `group` call's groupId is kept with the event, so its
-- traits are the group's (the `groups` view), never the person's, and its person is linked to the group (the
-- `profile_groups` view).
ALTER TABLE {db}.events_landing ADD COLUMN IF NOT EXISTS groupId String;

ALTER TABLE {db}.events_store ADD COLUMN IF NOT EXISTS group_id String;
