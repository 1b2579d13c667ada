-- Current members: the last change of each (audience, member) is an entry.
CREATE VIEW {db}.audience_members_current AS
SELECT audience_id, member, any(member_type) AS member_type, max(changed_at) AS since
FROM {db}.audience_members
GROUP BY audience_id, member
HAVING argMax(status, changed_at) = 'entered'
