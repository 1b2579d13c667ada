-- reapplied when the settings it renders change
-- Retention (README, "Retention"): how long each table keeps what it keeps, from the settings (sinks/retention.py).
-- The runner applies this file again whenever one of the settings it renders changes, so a retention is changed
-- by a setting and a restart; every statement is idempotent.
--
-- Raw events of never-identified identifiers: a TTL can only read the row itself (a subquery in a TTL is
-- evaluated at every insert, over the whole identities store, which would cost the sink its throughput), and
-- "never identified" is a property of the person, known to the identity graph, not to the event. So the row
-- carries it: `anonymous` (017) is 1 when the event's own identifiers are all anonymous ones, and the TTL deletes
-- such rows after the retention. A cookie identified later (a login) clears the flag of its earlier events
-- (sinks/retention.py: a mutation that reads the identities store and writes no value into its text, run before
-- this file is applied and then periodically by the worker), so its history stays with the person. The time is
-- the server's receivedAt: a client clock in the future cannot keep an event for ever.
ALTER TABLE {db}.events_store MODIFY TTL
    toDateTime(received_at) + INTERVAL {anonymous_events_ttl_days} DAY DELETE WHERE anonymous = 1;

-- Refused links name two identifiers each: kept for the refusals' retention after the refusal.
ALTER TABLE {db}.identity_refusals MODIFY TTL toDateTime(refused_at) + INTERVAL {refusals_ttl_days} DAY;

-- Audience history: changes older than the retention are rolled up into one row per member, its state after
-- them (the last change), so the history goes while the current membership (audience_members_current, the last
-- change of each member) stays what it was: a row-wise delete would drop the entry of a member still in the
-- audience, or leave an old entry behind a deleted exit. The roll-up is per part, which keeps the last change
-- of each member whichever parts its rows are in.
ALTER TABLE {db}.audience_members MODIFY TTL toDateTime(changed_at) + INTERVAL {audience_history_ttl_days} DAY
    GROUP BY audience_id, member SET changed_at = max(changed_at), status = argMax(status, changed_at);

-- The DMP side: 013 made the store with this TTL; restated here so that a changed setting reaches it too.
ALTER TABLE {db}.anonymous_profiles_store MODIFY TTL toDateTime(last_seen) + INTERVAL {ttl_days} DAY
