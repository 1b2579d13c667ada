"""What the console reads from ClickHouse beyond the profile and audience APIs: an audience's size before it is
saved, its membership over time, and the merges a profile took part in. Parameterised SQL, valid on a
ClickHouse server as on chDB."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sinks.audience_sql import CompiledAudience
from sinks.clickhouse import ClickHouse

HISTORY_SQL = """
SELECT toDate(changed_at) AS day, sum(if(status = 'entered', 1, -1)) AS change
FROM {db}.audience_members WHERE audience_id = {a:String}
GROUP BY day ORDER BY day
"""
# The `merges` view's rows into or out of the profile, computed for the profiles that merged with it only: the view
# checks every merged-away profile against the current owner of every identifier, which costs the same for any
# profile; here the candidates' own keys (profile_keys) are looked up in identities_store by primary key.
MERGES_SQL = """
WITH candidates AS
(
    SELECT DISTINCT from_profile FROM {db}.merges_store WHERE into_profile = {p:String} OR from_profile = {p:String}
)
SELECT from_profile, argMax(i, at) AS into_profile, argMax(c, at) AS cause, max(at) AS merged_at
FROM (SELECT from_profile, into_profile AS i, cause AS c, merged_at AS at FROM {db}.merges_store)
WHERE from_profile IN (SELECT from_profile FROM candidates)
  AND from_profile NOT IN
      (
          SELECT argMax(profile_id, version) FROM {db}.identities_store
          WHERE (id_type, id_value) IN
              (SELECT substring(key, 1, position(key, ':') - 1), substring(key, position(key, ':') + 1)
               FROM {db}.profile_keys WHERE profile_id IN (SELECT from_profile FROM candidates))
          GROUP BY id_type, id_value
      )
GROUP BY from_profile
HAVING into_profile = {p:String} OR from_profile = {p:String}
ORDER BY merged_at DESC LIMIT 100
"""


def preview_size(ch: ClickHouse, compiled: CompiledAudience) -> int:
    """How many members the compiled audience would have now, without storing anything."""
    return int(ch.scalar(f"SELECT count() FROM ({compiled.sql})", compiled.params) or 0)


def membership_history(ch: ClickHouse, audience_id: str, today: date | None = None) -> list[dict[str, Any]]:
    """The audience's size at the end of every day since its first change, up to ``today``: the running sum of
    entries minus exits (days without a change repeat the size before them)."""
    _, rows = ch.query(HISTORY_SQL.replace("{db}", ch.database), {"a": audience_id})
    changes = {day: int(change) for day, change in rows}
    if not changes:
        return []
    day, last = min(changes), max(max(changes), today or date.today())
    size, out = 0, []
    while day <= last:
        size += changes.get(day, 0)
        out.append({"day": day.isoformat(), "size": size})
        day += timedelta(days=1)
    return out


def merges_of(ch: ClickHouse, profile_id: str) -> list[dict[str, Any]]:
    """The merges that folded a profile into this one or this one into another, newest first."""
    columns, rows = ch.query(MERGES_SQL.replace("{db}", ch.database), {"p": profile_id})
    return [dict(zip(columns, r, strict=True)) for r in rows]
