CREATE VIEW {db}.audiences_current AS
SELECT audience_id, name, scope, rule, created_at
FROM {db}.audiences FINAL
WHERE deleted = 0
