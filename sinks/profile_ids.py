"""An old profile id to the profile that holds its identifiers now, through ``cdp.merges``.

A profile id is a label: when an older identifier joins, the label moves to it, and the id a CRM or an e-mail tool
stored minutes ago no longer names a profile. Every merge is recorded (from_profile folded into into_profile), so
the profiles an id was ever merged with are reachable from it; the current profile is the one among them that
still holds identifiers. The walk reads every merge record (``merges_store``, not the ``merges`` view's latest
merge per profile), as links in both directions: one pair may be recorded both ways, and then the direction
says nothing. The walk is bounded, so a huge merge history cannot hold a request.
"""

from __future__ import annotations

from sinks.clickhouse import ClickHouse

__all__ = ["MAX_HOPS", "current_profile_id"]

MAX_HOPS = 32

# the identifiers the ids hold now, among those they ever held (profile_keys, by primary key at both steps)
_HOLDERS_SQL = """
SELECT profile_id, count() AS identifiers FROM {db}.identities_store FINAL
WHERE (id_type, id_value) IN (SELECT substring(key, 1, position(key, ':') - 1), substring(key, position(key, ':') + 1)
                              FROM {db}.profile_keys WHERE profile_id IN {ids:Array(String)})
  AND profile_id IN {ids:Array(String)}
GROUP BY profile_id ORDER BY identifiers DESC, profile_id LIMIT 1
"""
_MERGED_WITH_SQL = """
SELECT from_profile, into_profile FROM {db}.merges_store
WHERE from_profile IN {ids:Array(String)} OR into_profile IN {ids:Array(String)}
"""


def current_profile_id(ch: ClickHouse, profile_id: str) -> str | None:
    """``profile_id`` itself while it holds identifiers, else the profile it was merged into (directly or through
    later merges) that holds them now; None for an id no profile ever had."""
    db = ch.database
    holders, merged_with = _HOLDERS_SQL.replace("{db}", db), _MERGED_WITH_SQL.replace("{db}", db)
    seen = {profile_id}
    frontier = [profile_id]
    for _ in range(MAX_HOPS):
        holder = ch.scalar(holders, {"ids": frontier})
        if holder:
            return str(holder)
        _, rows = ch.query(merged_with, {"ids": frontier})
        frontier = sorted({p for row in rows for p in row} - seen)
        if not frontier:
            return None
        seen.update(frontier)
    return None
